/*
 * Publish signed OpenSmog readings to co2logserver over MQTT.
 *
 * Board: ESP32 (Arduino core 2.x or 3.x). Libraries: PubSubClient (Nick O'Leary).
 *
 * 1. Register the sensor once over HTTP and keep the SECRET it answers:
 *      curl -X PUT -H 'Content-Type: application/json' \
 *           --data '{"model": "esp32-demo"}' \
 *           https://co2.example.org/v1/sensors/<SUID>
 * 2. Fill in the settings below and flash.
 *
 * Every minute the sketch publishes one observation to
 *   opensmog/v1/sensors/<SUID>/readings/<OpenSmogHash>
 * where OpenSmogHash = hex(sha256(payload bytes + SECRET as 64 hex characters)).
 * MQTT 3.1.1 has no headers, so the hash is the last topic level. Refusals (wrong
 * hash, invalid payload, rate limit) arrive as {"error": "..."} on
 *   opensmog/v1/sensors/<SUID>/errors
 * and are printed on the serial console.
 *
 * PubSubClient publishes at QoS 0: configure the broker with
 * "upgrade_outgoing_qos true" (see docs/mqtt.rst) so that readings wait for the
 * subscriber when it is down. Resending a reading is harmless: the server stores
 * each (sensor, timestamp, type) once, so a sketch may keep readings it is unsure
 * about and publish them again.
 */

#include <PubSubClient.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <time.h>

#include "mbedtls/md.h"

// ---- settings -----------------------------------------------------------------
const char *WIFI_SSID = "my-wifi";
const char *WIFI_PASSWORD = "my-wifi-password";

const char *MQTT_HOST = "mqtt.example.org";
const uint16_t MQTT_PORT = 8883;
const char *TOPIC_PREFIX = "opensmog";  // CO2LOGSERVER_MQTT_PREFIX

// The sensor's SUID: its broker user name, client id and topic level.
const char *SUID = "6f1e2d3c-4b5a-4987-8a6b-5c4d3e2f1a0b";
// The broker password of this device (mosquitto_passwd), not the SECRET.
const char *MQTT_PASSWORD = "broker-password-of-this-device";
// The SECRET from PUT /v1/sensors/<SUID>: 64 hex characters. It only signs;
// it is never sent.
const char *SECRET =
    "0000000000000000000000000000000000000000000000000000000000000000";

// The CA certificate that signed the broker's certificate (PEM).
const char *CA_CERT = R"PEM(
-----BEGIN CERTIFICATE-----
...your CA certificate...
-----END CERTIFICATE-----
)PEM";

const unsigned long INTERVAL_MS = 60UL * 1000UL;
// -------------------------------------------------------------------------------

WiFiClientSecure net;
PubSubClient mqtt(net);
char errorsTopic[128];
unsigned long lastPublish = 0;

// Replace with your sensor; values are in the units of the OpenSmog API
// (TEMP in degrees Celsius, HUM in percent).
float readTemperature() { return 21.5; }
float readHumidity() { return 48.0; }

// hex(sha256(payload + SECRET)) into out (65 bytes with the terminating NUL).
void opensmogHash(const char *payload, size_t length, char *out) {
  unsigned char digest[32];
  mbedtls_md_context_t ctx;
  mbedtls_md_init(&ctx);
  mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0);
  mbedtls_md_starts(&ctx);
  mbedtls_md_update(&ctx, (const unsigned char *)payload, length);
  mbedtls_md_update(&ctx, (const unsigned char *)SECRET, strlen(SECRET));
  mbedtls_md_finish(&ctx, digest);
  mbedtls_md_free(&ctx);
  for (int i = 0; i < 32; i++) {
    sprintf(out + 2 * i, "%02x", digest[i]);
  }
  out[64] = '\0';
}

// The claim code (docs/owners.rst): hex(sha256("claim:" + SECRET)) cut to 10
// characters, into out (11 bytes). Enter it with the SUID on the server's /claim.
void claimCode(char *out) {
  const char *prefix = "claim:";
  unsigned char digest[32];
  mbedtls_md_context_t ctx;
  mbedtls_md_init(&ctx);
  mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0);
  mbedtls_md_starts(&ctx);
  mbedtls_md_update(&ctx, (const unsigned char *)prefix, strlen(prefix));
  mbedtls_md_update(&ctx, (const unsigned char *)SECRET, strlen(SECRET));
  mbedtls_md_finish(&ctx, digest);
  mbedtls_md_free(&ctx);
  for (int i = 0; i < 5; i++) {
    sprintf(out + 2 * i, "%02x", digest[i]);
  }
  out[10] = '\0';
}

// The server answers refused messages here; print them.
void onMessage(char *topic, byte *payload, unsigned int length) {
  Serial.print("refused by the server: ");
  Serial.write(payload, length);
  Serial.println();
}

void connectWifi() {
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) {
    delay(500);
  }
}

// Timestamps are UNIX seconds (UTC): wait until NTP has set the clock.
void syncClock() {
  configTime(0, 0, "pool.ntp.org", "time.nist.gov");
  while (time(nullptr) < 1700000000) {
    delay(500);
  }
}

void connectMqtt() {
  while (!mqtt.connected()) {
    // Client id and user name are the SUID, so the broker's ACL can limit this
    // device to its own topics.
    if (mqtt.connect(SUID, SUID, MQTT_PASSWORD)) {
      mqtt.subscribe(errorsTopic, 1);
    } else {
      Serial.printf("MQTT connect failed (state %d); retrying\n", mqtt.state());
      delay(5000);
    }
  }
}

void publishReadings() {
  char payload[160];
  int length = snprintf(
      payload, sizeof payload,
      "[{\"timestamp\":%ld,\"readings\":{\"TEMP\":%.2f,\"HUM\":%.1f}}]",
      (long)time(nullptr), readTemperature(), readHumidity());
  if (length <= 0 || length >= (int)sizeof payload) {
    return;
  }
  char hash[65];
  opensmogHash(payload, length, hash);  // over exactly the bytes published
  char topic[160];
  snprintf(topic, sizeof topic, "%s/v1/sensors/%s/readings/%s", TOPIC_PREFIX,
           SUID, hash);
  if (!mqtt.publish(topic, (const uint8_t *)payload, length)) {
    Serial.println("publish failed (not connected, or the buffer is too small)");
  }
}

void setup() {
  Serial.begin(115200);
  char code[11];
  claimCode(code);
  Serial.printf("SUID %s, claim code %s\n", SUID, code);
  snprintf(errorsTopic, sizeof errorsTopic, "%s/v1/sensors/%s/errors",
           TOPIC_PREFIX, SUID);
  connectWifi();
  syncClock();
  net.setCACert(CA_CERT);
  mqtt.setServer(MQTT_HOST, MQTT_PORT);
  mqtt.setCallback(onMessage);
  // Topic (about 130 bytes) and payload must fit PubSubClient's buffer.
  mqtt.setBufferSize(512);
}

void loop() {
  if (WiFi.status() != WL_CONNECTED) {
    connectWifi();
  }
  connectMqtt();
  mqtt.loop();
  if (lastPublish == 0 || millis() - lastPublish >= INTERVAL_MS) {
    lastPublish = millis();
    publishReadings();
  }
}
