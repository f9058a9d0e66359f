/*
 * lbx_crypto.h - the primitives bayeux.ext.jwt needs, from OpenSSL's
 * libcrypto (lbx_crypto.c): HMAC-SHA256, RSA-SHA256 (PKCS #1 v1.5)
 * signatures, strict base64url and a constant-time comparison.
 */
#ifndef LBX_CRYPTO_H
#define LBX_CRYPTO_H

#include <lua.h>

/* Registers hmac_sha256, b64url_encode, b64url_decode, same_bytes and
 * pem_key in the module table at the top of the stack. */
void lbx_crypto_open(lua_State *L);

#endif
