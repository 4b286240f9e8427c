/*
  opensmog_hash2.h - the OpenSmogHash2 signature of co2logserver (docs/security.rst).

  hash = sha256("<ts>:<seq>:" + body + SECRET), as 64 lower-case hex characters,
  sent as
      Authorization: OpenSmogHash2 ts=<ts>,seq=<seq>,hash=<hex>

  Portable C99 with its own SHA-256, so the same file builds for an AVR, an ESP8266,
  an ESP32 or a PC (the test suite compiles it with the system compiler and checks it
  against the published test vectors).
*/
#ifndef OPENSMOG_HASH2_H
#define OPENSMOG_HASH2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint32_t state[8];
  uint64_t length;  /* bytes hashed so far */
  uint8_t block[64];
  size_t used;      /* bytes waiting in block */
} osh_sha256;

void osh_sha256_init(osh_sha256 *ctx);
void osh_sha256_update(osh_sha256 *ctx, const void *data, size_t len);
void osh_sha256_final(osh_sha256 *ctx, uint8_t digest[32]);

/* Writes the 64 hex characters and a NUL into hex_out[65]. */
void opensmog_hash2(uint64_t ts, uint64_t seq, const uint8_t *body, size_t body_len,
                    const char *secret, char hex_out[65]);

/* Writes "OpenSmogHash2 ts=..,seq=..,hash=.." into out (at most out_len bytes,
   NUL-terminated); returns the length written, or 0 when out is too small. */
size_t opensmog_hash2_header(uint64_t ts, uint64_t seq, const uint8_t *body,
                             size_t body_len, const char *secret, char *out,
                             size_t out_len);

/* The claim code of SPEC §12: the first 10 hex characters of
   sha256("claim:" + SECRET), written with a NUL into code_out[11]. Print it for
   the owner, who enters it with the SUID on the server's /claim page. */
void opensmog_claim_code(const char *secret, char code_out[11]);

#ifdef __cplusplus
}
#endif

#endif
