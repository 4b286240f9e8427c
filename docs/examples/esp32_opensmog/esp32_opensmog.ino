/*
  esp32_opensmog.ino - an OpenSmog sensor for the ESP32 (Arduino core 2.x or 3.x).

  What it does, as the co2logserver API reference (docs/api.rst) describes:

  1. Joins WiFi and sets its clock by NTP, or from the X-OpenSmog-Time header of
     the server's replies. Until the clock is set, observations carry "age" (seconds
     before the request) instead of "timestamp", so nothing measured is lost.
  2. Registers once: PUT /v1/sensors/<SUID> with its metadata. The reply is the
     SECRET (64 hex characters), shown by the server this one time. It is kept in
     NVS (Preferences), so it survives resets and power cuts, and never printed.
     What is printed (after registering and at every start) is the claim code,
     sha256("claim:" + SECRET) cut to 10 hex characters: its owner enters it with
     the SUID on the server's /claim page (docs/owners.rst).
  3. Measures every MEASURE_INTERVAL_S seconds, keeps the observations in a RAM
     buffer and posts the whole buffer to /v1/sensors/<SUID>/readings with
         Authorization: OpenSmogHash2 ts=<now or 0>,seq=<counter>,hash=<hex>
         hash = sha256("<ts>:<seq>:" + body bytes + SECRET)
     (replay-safe: the server accepts each seq once). seq lives in NVS, saved every
     SEQ_SAVE_EVERY posts; at boot it jumps SEQ_SAVE_EVERY ahead, so a seq is never
     reused after a power cut.
  4. When a post fails (no network, 429, 5xx) the request is kept and sent again:
     byte for byte with the same seq while the clock is unset (the server answers an
     identical retry 200 and stores nothing), re-signed with a new seq once its ts is
     old (timestamped readings are stored once per (timestamp, type) anyway).

  A 401 or 403 means the server no longer takes this SECRET: the SUID was
  registered again from elsewhere, or the operator reset it. The sketch then
  stops posting (it keeps measuring into the buffer) instead of registering again
  on its own, which would hide a takeover. Hold the BOOT button (GPIO0) while
  pressing RESET to forget the SECRET and register again.

  Boards: any ESP32 with the "esp32" Arduino core. Libraries: all built in
  (WiFi, HTTPClient, Preferences, mbedtls).
*/

#include <Arduino.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <esp_random.h>
#include <math.h>
#include <time.h>
#include <sys/time.h>

#include "mbedtls/md.h"

// ---- Settings -------------------------------------------------------------------

const char *WIFI_SSID = "your-wifi";
const char *WIFI_PASSWORD = "your-wifi-password";

// Base URL of the co2logserver, without a trailing slash. Use https:// in the
// field (the SECRET travels in the clear once, at registration); http:// is for
// a server on your desk.
const char *SERVER = "https://co2.example.org";

// PEM root certificate of SERVER's TLS chain (ignored for http://).
const char *ROOT_CA = R"PEM(-----BEGIN CERTIFICATE-----
...paste the root certificate of your server's chain here...
-----END CERTIFICATE-----
)PEM";

const char *MANUFACTURER = "DIY";
const char *MODEL = "esp32_opensmog";
// Where the sensor stands. Public answers of the server round it (about 1 km).
const double LATITUDE = 52.5200;
const double LONGITUDE = 13.4050;
const double ELEVATION = 34.0;  // metres above sea level

const uint32_t MEASURE_INTERVAL_S = 60;
// Observations kept while the server cannot be reached (60 = one hour). The server
// takes at most 1000 per request; when the buffer is full the oldest one goes.
const size_t BUFFER_SIZE = 60;

const int FORGET_PIN = 0;  // BOOT button: held at start, forget the SECRET

// Write seq to NVS every this many posts (flash wears out); at boot seq continues
// this far above the saved value, past every seq used since the last save.
const uint32_t SEQ_SAVE_EVERY = 32;
// Re-sign a pending request once its ts is this old (the server takes |ts - now|
// up to CO2LOGSERVER_REPLAY_WINDOW, 300 s by default).
const uint32_t RESIGN_AFTER_S = 240;
const time_t CLOCK_SET_AFTER = 1700000000;  // earlier: the clock is not set

// ---- State ----------------------------------------------------------------------

struct Observation {
  uint32_t timestamp;  // UNIX seconds, UTC; 0 while the clock is not set
  uint32_t takenMs;    // millis() when measured, for "age" without a clock
  float pm10, pm2_5;   // µg/m³ (NAN: not measured)
  float temp, hum;     // °C, %
};

Observation buffer[BUFFER_SIZE];
size_t buffered = 0;  // observations in buffer[0 .. buffered)

Preferences prefs;  // NVS namespace "opensmog": keys "suid", "secret" and "seq"
String suid;
String secret;         // 64 hex characters once registered
bool refused = false;  // the server refused our SECRET (401/403)
uint64_t seq = 0;      // the next OpenSmogHash2 counter value

// The request in flight: resent unchanged until the server answers it.
String pendingBody;
String pendingAuth;
size_t pendingCount = 0;  // observations of buffer[] it carries
uint32_t pendingTs = 0;   // its ts (0: no clock)

WiFiClientSecure tlsClient;
WiFiClient plainClient;

// ---- Measuring ------------------------------------------------------------------

// One observation. Replace the made-up values with your sensor driver (e.g. an
// SDS011 for PM, a BME280 for temperature and humidity); use NAN for a value
// that could not be read: it is left out of the payload.
bool clockSet() { return time(nullptr) > CLOCK_SET_AFTER; }

bool measure(Observation &o) {
  o.timestamp = clockSet() ? (uint32_t)time(nullptr) : 0;
  o.takenMs = millis();
  o.pm10 = 20.0f + (esp_random() % 100) / 10.0f;
  o.pm2_5 = 12.0f + (esp_random() % 100) / 10.0f;
  o.temp = 21.5f;
  o.hum = NAN;
  return true;
}

bool finite(float value) { return !isnan(value) && !isinf(value); }

// Keep an observation; a full buffer drops its oldest one. An observation without
// any reading is not kept: the server would refuse the whole payload for it.
void keep(const Observation &o) {
  if (!finite(o.pm10) && !finite(o.pm2_5) && !finite(o.temp) && !finite(o.hum)) {
    return;
  }
  if (buffered == BUFFER_SIZE) {
    memmove(buffer, buffer + 1, sizeof(Observation) * (BUFFER_SIZE - 1));
    buffered--;
    if (pendingCount) pendingCount--;  // the pending request no longer owns it
  }
  buffer[buffered++] = o;
}

// ---- The OpenSmog API -----------------------------------------------------------

// Append "TYPE":value to a readings object, unless the value is missing.
void addReading(String &json, bool &first, const char *type, float value) {
  if (!finite(value)) return;  // the server refuses NaN and infinities
  char item[48];
  snprintf(item, sizeof item, "%s\"%s\":%.2f", first ? "" : ",", type, value);
  json += item;
  first = false;
}

// The whole buffer as the JSON payload: [{"timestamp":..,"readings":{..}}, ..];
// an observation measured before the clock was set gives its "age" instead.
String payload() {
  String json = "[";
  uint32_t nowMs = millis();
  for (size_t i = 0; i < buffered; i++) {
    const Observation &o = buffer[i];
    char head[56];
    if (o.timestamp) {
      snprintf(head, sizeof head, "%s{\"timestamp\":%lu,\"readings\":{",
               i ? "," : "", (unsigned long)o.timestamp);
    } else {
      snprintf(head, sizeof head, "%s{\"age\":%lu,\"readings\":{", i ? "," : "",
               (unsigned long)((nowMs - o.takenMs) / 1000UL));
    }
    json += head;
    bool first = true;
    addReading(json, first, "PM10", o.pm10);
    addReading(json, first, "PM2_5", o.pm2_5);
    addReading(json, first, "TEMP", o.temp);
    addReading(json, first, "HUM", o.hum);
    json += "}}";
  }
  return json + "]";
}

// OpenSmogHash2: sha256 of "<ts>:<seq>:", the exact body bytes and the SECRET's 64
// ASCII hex characters (not the 32 bytes they stand for), as lowercase hex. The
// test vectors are in docs/security.rst; docs/examples/opensmog_hash2/ has the
// same in portable C for boards without mbedtls.
String opensmogHash2(uint32_t ts, uint64_t counter, const String &body,
                     const String &key) {
  char prefix[40];
  int n = snprintf(prefix, sizeof prefix, "%lu:%llu:", (unsigned long)ts,
                   (unsigned long long)counter);
  unsigned char digest[32];
  mbedtls_md_context_t ctx;
  mbedtls_md_init(&ctx);
  mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0);
  mbedtls_md_starts(&ctx);
  mbedtls_md_update(&ctx, (const unsigned char *)prefix, n);
  mbedtls_md_update(&ctx, (const unsigned char *)body.c_str(), body.length());
  mbedtls_md_update(&ctx, (const unsigned char *)key.c_str(), key.length());
  mbedtls_md_finish(&ctx, digest);
  mbedtls_md_free(&ctx);
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return String(hex);
}

// The claim code (SPEC §12): the first 10 hex characters of
// sha256("claim:" + SECRET). Its owner enters it with the SUID on the server's
// /claim page to prove they hold this device; it is not the SECRET and cannot sign.
String claimCode(const String &key) {
  const char *prefix = "claim:";
  unsigned char digest[32];
  mbedtls_md_context_t ctx;
  mbedtls_md_init(&ctx);
  mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0);
  mbedtls_md_starts(&ctx);
  mbedtls_md_update(&ctx, (const unsigned char *)prefix, strlen(prefix));
  mbedtls_md_update(&ctx, (const unsigned char *)key.c_str(), key.length());
  mbedtls_md_finish(&ctx, digest);
  mbedtls_md_free(&ctx);
  char hex[11];
  for (int i = 0; i < 5; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  return String(hex);
}

void printClaimCode() {
  Serial.printf("claim code %s: enter it with the SUID at %s/claim\n",
                claimCode(secret).c_str(), SERVER);
}

// Open a request on TLS (https://) or plain TCP (http://).
bool begin(HTTPClient &http, const String &url) {
  http.setTimeout(15000);
  if (url.startsWith("https://")) {
    tlsClient.setCACert(ROOT_CA);
    return http.begin(tlsClient, url);
  }
  return http.begin(plainClient, url);
}

bool isSecret(const String &text) {
  if (text.length() != 64) return false;
  for (size_t i = 0; i < text.length(); i++) {
    if (!isxdigit((unsigned char)text[i])) return false;
  }
  return true;
}

// PUT /v1/sensors/<SUID>: keep the SECRET of the reply in NVS.
bool registerSensor() {
  HTTPClient http;
  if (!begin(http, String(SERVER) + "/v1/sensors/" + suid)) return false;
  char body[256];
  snprintf(body, sizeof body,
           "{\"manufacturer\":\"%s\",\"model\":\"%s\",\"location\":"
           "{\"latitude\":%.6f,\"longitude\":%.6f,\"elevation\":%.1f}}",
           MANUFACTURER, MODEL, LATITUDE, LONGITUDE, ELEVATION);
  http.addHeader("Content-Type", "application/json");
  int status = http.PUT(String(body));
  String reply = http.getString();
  http.end();
  reply.trim();
  if (status != 200 || !isSecret(reply)) {
    // 409: the server refuses to register this SUID again; ask its operator
    // to run "python3 -m co2logserver reset-sensor <SUID>".
    Serial.printf("registration failed (%d): %s\n", status, reply.c_str());
    return false;
  }
  prefs.putString("secret", reply);
  secret = reply;
  refused = false;
  Serial.println("registered; SECRET kept in NVS");  // never print the SECRET
  printClaimCode();  // a new SECRET has a new claim code
  return true;
}

// The next seq; written to NVS every SEQ_SAVE_EVERY values.
uint64_t takeSeq() {
  uint64_t value = seq++;
  if (seq % SEQ_SAVE_EVERY == 0) prefs.putULong64("seq", seq);
  return value;
}

// At boot: continue SEQ_SAVE_EVERY above the saved value, and save that at once.
void restoreSeq() {
  seq = prefs.getULong64("seq", 0) + SEQ_SAVE_EVERY;
  prefs.putULong64("seq", seq);
}

// Sign the buffer as a new request (new seq), unless one is still pending.
void prepareRequest() {
  bool stale = pendingTs && (uint32_t)time(nullptr) - pendingTs > RESIGN_AFTER_S;
  if (pendingCount && !stale) return;  // resend it byte for byte
  pendingBody = payload();
  pendingCount = buffered;
  pendingTs = clockSet() ? (uint32_t)time(nullptr) : 0;
  uint64_t counter = takeSeq();
  char head[64];
  snprintf(head, sizeof head, "OpenSmogHash2 ts=%lu,seq=%llu,hash=",
           (unsigned long)pendingTs, (unsigned long long)counter);
  pendingAuth = String(head) + opensmogHash2(pendingTs, counter, pendingBody, secret);
}

bool clockCorrected = false;  // the last reply moved our clock

// Set the clock from X-OpenSmog-Time when NTP has not set it or it drifted.
void learnTime(HTTPClient &http) {
  long serverTime = http.header("X-OpenSmog-Time").toInt();
  long ours = (long)time(nullptr);
  clockCorrected = false;
  if (serverTime > CLOCK_SET_AFTER && labs(serverTime - ours) > 60) {
    struct timeval tv = {serverTime, 0};
    settimeofday(&tv, nullptr);
    clockCorrected = true;
    Serial.println("clock set from X-OpenSmog-Time");
  }
}

// POST the pending request. Returns the HTTP status (< 0: no connection).
int postPending() {
  HTTPClient http;
  if (!begin(http, String(SERVER) + "/v1/sensors/" + suid + "/readings")) return -1;
  const char *wanted[] = {"X-OpenSmog-Time"};
  http.collectHeaders(wanted, 1);
  http.addHeader("Content-Type", "application/json");
  http.addHeader("Authorization", pendingAuth);
  int status = http.POST(pendingBody);
  if (status > 0) learnTime(http);
  if (status != 200) {
    Serial.printf("post of %u observations: %d %s\n", (unsigned)pendingCount,
                  status, status > 0 ? http.getString().c_str() : "");
  }
  http.end();
  return status;
}

// Drop the observations the pending request carried.
void dropPending() {
  memmove(buffer, buffer + pendingCount,
          sizeof(Observation) * (buffered - pendingCount));
  buffered -= pendingCount;
  pendingCount = 0;
  pendingTs = 0;
}

// Act on the answer to a post: clear, keep, re-sign or stop.
void handle(int status) {
  if (status == 200 || status == 400 || status == 413) {
    dropPending();  // stored (or already stored), or never storable: done
  } else if (status == 401 && pendingTs && clockCorrected) {
    pendingCount = 0;  // refused for our clock, which is right now: sign anew
  } else if (status == 401 || status == 403) {
    refused = true;
    Serial.println("SECRET refused: hold BOOT while pressing RESET to register again");
  }
  // Anything else (no connection, 429, 5xx): keep the request, resend it next time.
}

// ---- Setup and loop -------------------------------------------------------------

// A random (version 4) UUID. A manufacturer prints the SUID on the device; a DIY
// sensor makes one once and keeps it. esp_random() is truly random once the radio
// is on, so this runs after WiFi has started.
String newSuid() {
  uint8_t b[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t r = esp_random();
    memcpy(b + i, &r, 4);
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  char text[37];
  snprintf(text, sizeof text,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
           b[12], b[13], b[14], b[15]);
  return String(text);
}

void connectWifi() {
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  for (int i = 0; i < 40 && WiFi.status() != WL_CONNECTED; i++) delay(500);
  Serial.printf("WiFi %s\n", WiFi.status() == WL_CONNECTED ? "connected" : "not yet");
}

void setup() {
  Serial.begin(115200);
  pinMode(FORGET_PIN, INPUT_PULLUP);
  prefs.begin("opensmog", false);
  if (digitalRead(FORGET_PIN) == LOW) {
    prefs.remove("secret");
    Serial.println("SECRET forgotten: this sensor registers again");
  }
  connectWifi();
  configTime(0, 0, "pool.ntp.org", "time.nist.gov");
  suid = prefs.getString("suid", "");
  if (suid.length() != 36) {
    suid = newSuid();
    prefs.putString("suid", suid);
  }
  secret = prefs.getString("secret", "");
  restoreSeq();
  Serial.printf("SUID %s (%s)\n", suid.c_str(),
                isSecret(secret) ? "registered" : "not registered yet");
  if (isSecret(secret)) printClaimCode();
}

void loop() {
  static uint32_t lastRun = 0;
  static bool started = false;
  if (started && millis() - lastRun < MEASURE_INTERVAL_S * 1000UL) {
    delay(100);
    return;
  }
  started = true;
  lastRun = millis();

  Observation o;
  if (measure(o)) keep(o);
  if (WiFi.status() != WL_CONNECTED) {
    WiFi.reconnect();
    return;  // measured and buffered; post next time
  }
  if (!isSecret(secret) && !registerSensor()) return;  // try again next time
  if (refused || buffered == 0) return;
  prepareRequest();
  handle(postPending());
}
