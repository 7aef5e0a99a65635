# Install midbox from this unpacked bundle on Windows. Uses no network.
#   powershell -ExecutionPolicy Bypass -File .\install.ps1 [-Prefix "C:\Program Files\midbox"]
# Verify the bundle's signature first (see INSTALL.md). Run from an elevated prompt.
# NOT YET TESTED on a Windows host: the Windows CI workflow builds and smoke-tests the binary only.
param([string]$Prefix = (Join-Path $env:ProgramFiles "midbox"))
$ErrorActionPreference = "Stop"
Set-Location -LiteralPath $PSScriptRoot

Write-Host "1/4 checking files against SHA256SUMS"
foreach ($line in Get-Content -LiteralPath "SHA256SUMS") {
    if ($line -notmatch '^([0-9a-f]{64})  ([A-Za-z0-9][A-Za-z0-9._+-]*)$') { throw "bad SHA256SUMS line: $line" }
    $actual = (Get-FileHash -Algorithm SHA256 -LiteralPath $Matches[2]).Hash.ToLowerInvariant()
    if ($actual -ne $Matches[1]) { throw "$($Matches[2]) differs from SHA256SUMS: do not install this bundle" }
}

Write-Host "2/4 installing $Prefix\midbox.exe"
New-Item -ItemType Directory -Force -Path $Prefix | Out-Null
Copy-Item -Force -LiteralPath "midbox.exe", "INSTALL.md", "midbox.cdx.json" -Destination $Prefix
# The reference docs, flat like in the bundle so their relative links keep working.
$docs = Join-Path $Prefix "doc"
New-Item -ItemType Directory -Force -Path $docs | Out-Null
Copy-Item -Force -Path (Join-Path $PSScriptRoot "*.md") -Destination $docs

Write-Host "3/4 state folder with an ACL for SYSTEM and Administrators only"
$state = Join-Path $env:ProgramData "midbox"
New-Item -ItemType Directory -Force -Path $state | Out-Null
# Replace inherited permissions: the state folder holds the credential store and the mTLS key.
icacls $state /inheritance:r /grant:r "*S-1-5-18:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" | Out-Null

Write-Host "4/4 checking the installed binary"
& (Join-Path $Prefix "midbox.exe") --version
if ($LASTEXITCODE -ne 0) { throw "the installed binary does not start" }
Write-Host "installed. Next: midbox enroll, midbox trust init, then midbox service install (see INSTALL.md; reference docs in $docs)"
