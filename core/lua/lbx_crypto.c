/*
 * lbx_crypto.c - what verifying a JSON Web Token asks of C (lbx_crypto.h):
 *
 *   core.hmac_sha256(key, data)   -> 32 raw bytes
 *   core.b64url_encode(bytes)     -> text without padding
 *   core.b64url_decode(text)      -> bytes | nil (anything but canonical
 *                                    unpadded base64url is refused)
 *   core.same_bytes(a, b)         -> bool, in time that depends only on the
 *                                    lengths (CRYPTO_memcmp)
 *   core.pem_key(pem)             -> key | nil, err (a public or private
 *                                    key in PEM); key:type(), key:bits(),
 *                                    key:verify_sha256(data, sig) -> bool,
 *                                    key:sign_sha256(data) -> sig
 *
 * The Lua layer (lua/bayeux/ext/jwt.lua) decides what a token means; here
 * only bytes are turned into bytes. No OpenSSL object outlives a call
 * except a key, owned by its userdata (freed by __gc). Every argument is
 * checked before anything is allocated, so a raising luaL_check* never
 * leaks an OpenSSL context.
 */
#include <string.h>
#include <lauxlib.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include "lua/lbx_crypto.h"

#define KEY_MT "bayeux.pem_key"

static const char B64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* core.hmac_sha256(key, data) -> the 32-byte MAC. */
static int l_hmac_sha256(lua_State *L)
{
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (klen > (size_t)0x7fffffff)
        return luaL_argerror(L, 1, "key too long");
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)data, dlen, out, &n)) {
        ERR_clear_error();
        return luaL_error(L, "hmac_sha256 failed");
    }
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

/* core.b64url_encode(bytes) -> unpadded base64url text. */
static int l_b64url_encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    size_t i = 0;

    luaL_buffinit(L, &b);
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        luaL_addchar(&b, B64URL[v >> 18 & 63]);
        luaL_addchar(&b, B64URL[v >> 12 & 63]);
        luaL_addchar(&b, B64URL[v >> 6 & 63]);
        luaL_addchar(&b, B64URL[v & 63]);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)s[i] << 16;
        luaL_addchar(&b, B64URL[v >> 18 & 63]);
        luaL_addchar(&b, B64URL[v >> 12 & 63]);
    } else if (n - i == 2) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
        luaL_addchar(&b, B64URL[v >> 18 & 63]);
        luaL_addchar(&b, B64URL[v >> 12 & 63]);
        luaL_addchar(&b, B64URL[v >> 6 & 63]);
    }
    luaL_pushresult(&b);
    return 1;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* core.b64url_decode(text) -> bytes, or nil when `text` is not canonical
 * base64url (RFC 7515, 2): padding, '+', '/', blanks, a lone last
 * character or unused bits that are not zero are all refused, so that one
 * token has exactly one spelling. */
static int l_b64url_decode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    unsigned acc = 0;
    int bits = 0;

    if (n % 4 == 1) {
        lua_pushnil(L);
        return 1;
    }
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(s[i]);
        if (v < 0) {
            lua_pushnil(L);
            return 1;
        }
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            luaL_addchar(&b, (char)(acc >> bits & 0xff));
        }
    }
    if (acc & ((1u << bits) - 1)) {     /* leftover bits must be zero */
        lua_pushnil(L);
        return 1;
    }
    luaL_pushresult(&b);
    return 1;
}

/* core.same_bytes(a, b) -> true when equal; the time depends on the
 * lengths only, never on where the strings differ. */
static int l_same_bytes(lua_State *L)
{
    size_t na, nb;
    const char *a = luaL_checklstring(L, 1, &na);
    const char *b = luaL_checklstring(L, 2, &nb);
    lua_pushboolean(L, na == nb && CRYPTO_memcmp(a, b, na) == 0);
    return 1;
}

/* ---- Keys ---- */

static int k_type(lua_State *L);
static int k_bits(lua_State *L);
static int k_verify_sha256(lua_State *L);
static int k_sign_sha256(lua_State *L);
static int k_gc(lua_State *L);

static EVP_PKEY *check_key(lua_State *L)
{
    EVP_PKEY **box = luaL_checkudata(L, 1, KEY_MT);
    if (!*box)
        luaL_error(L, "attempt to use a freed key");
    return *box;
}

/* Pushes the keys' metatable, made on first use: loading the module adds
 * nothing to the registry for applications that never use a key. */
static void key_metatable(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "type", k_type }, { "bits", k_bits }, { "verify_sha256", k_verify_sha256 },
        { "sign_sha256", k_sign_sha256 }, { NULL, NULL }
    };
    if (!luaL_newmetatable(L, KEY_MT))
        return;
    lua_pushcfunction(L, k_gc);
    lua_setfield(L, -2, "__gc");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
}

/* core.pem_key(pem) -> key, or nil and why: a PEM public key ("BEGIN
 * PUBLIC KEY", SubjectPublicKeyInfo) or a private key (which can also
 * verify and sign). */
static int l_pem_key(lua_State *L)
{
    size_t n;
    const char *pem = luaL_checklstring(L, 1, &n);
    EVP_PKEY **box;
    BIO *bio;
    EVP_PKEY *key = NULL;

    if (n > (size_t)0x7fffffff)
        return luaL_argerror(L, 1, "too long");
    box = lua_newuserdatauv(L, sizeof(*box), 0);
    *box = NULL;
    key_metatable(L);
    lua_setmetatable(L, -2);
    bio = BIO_new_mem_buf(pem, (int)n);
    if (bio) {
        if (strstr(pem, "PRIVATE KEY"))
            key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        else
            key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    ERR_clear_error();
    if (!key) {
        lua_pushnil(L);
        lua_pushliteral(L, "not a PEM key");
        return 2;
    }
    *box = key;
    return 1;
}

/* key:type() -> "RSA", "EC", "ED25519" or "other". */
static int k_type(lua_State *L)
{
    EVP_PKEY *key = check_key(L);
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA: lua_pushliteral(L, "RSA"); break;
    case EVP_PKEY_EC: lua_pushliteral(L, "EC"); break;
    case EVP_PKEY_ED25519: lua_pushliteral(L, "ED25519"); break;
    default: lua_pushliteral(L, "other"); break;
    }
    return 1;
}

/* key:bits() -> the key's size in bits. */
static int k_bits(lua_State *L)
{
    lua_pushinteger(L, EVP_PKEY_get_bits(check_key(L)));
    return 1;
}

/* key:verify_sha256(data, sig) -> true when `sig` is the key's SHA-256
 * signature of `data` (PKCS #1 v1.5 for RSA). */
static int k_verify_sha256(lua_State *L)
{
    EVP_PKEY *key = check_key(L);
    size_t dlen, slen;
    const char *data = luaL_checklstring(L, 2, &dlen);
    const char *sig = luaL_checklstring(L, 3, &slen);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = 0;

    if (ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1)
        ok = EVP_DigestVerify(ctx, (const unsigned char *)sig, slen,
                              (const unsigned char *)data, dlen) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    lua_pushboolean(L, ok);
    return 1;
}

/* key:sign_sha256(data) -> the signature (a private key only), or nil
 * and why. */
static int k_sign_sha256(lua_State *L)
{
    EVP_PKEY *key = check_key(L);
    size_t dlen;
    const char *data = luaL_checklstring(L, 2, &dlen);
    int max = EVP_PKEY_get_size(key);
    /* the output lives in Lua's memory, made before the context: nothing
     * of OpenSSL's is held while Lua might raise */
    unsigned char *out = lua_newuserdatauv(L, max > 0 ? (size_t)max : 1, 0);
    size_t len = max > 0 ? (size_t)max : 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = 0;

    if (ctx && max > 0 && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1)
        ok = EVP_DigestSign(ctx, out, &len, (const unsigned char *)data, dlen) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!ok) {
        lua_pushnil(L);
        lua_pushliteral(L, "cannot sign with this key (a private key is needed)");
        return 2;
    }
    lua_pushlstring(L, (const char *)out, len);
    return 1;
}

static int k_gc(lua_State *L)
{
    EVP_PKEY **box = luaL_checkudata(L, 1, KEY_MT);
    EVP_PKEY_free(*box);
    *box = NULL;
    return 0;
}

void lbx_crypto_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "hmac_sha256", l_hmac_sha256 }, { "b64url_encode", l_b64url_encode },
        { "b64url_decode", l_b64url_decode }, { "same_bytes", l_same_bytes },
        { "pem_key", l_pem_key }, { NULL, NULL }
    };
    luaL_setfuncs(L, funcs, 0);
}
