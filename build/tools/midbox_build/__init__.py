"""Build tools for the midbox release: reproducible binary, module manifest, SBOM and signed bundle.

Stdlib only, except where a module says it runs inside the build venv (PyInstaller) or needs
``cryptography`` (signing). Nothing here is part of the appliance binary.
"""
