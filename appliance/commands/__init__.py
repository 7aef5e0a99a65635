"""One module per command group. Each exposes ``register(subparsers, common)``.

Handlers import what they need inside the function, so ``midbox --version`` stays fast.
"""
