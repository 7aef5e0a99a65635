/* Test shim for Wine 8 only; never shipped. Wine 8 has no bcryptprimitives.dll, from which Rust's
 * standard library (inside the cryptography and bcrypt wheels) imports ProcessPrng for random
 * bytes. This forwards to BCryptGenRandom, which Wine does implement. Windows 10+ has the real DLL. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
