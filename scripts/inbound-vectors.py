#!/usr/bin/env python3
"""Writes fixtures/inbound/*.json: one signed delivery per inbound source kind, signed here with
Python's hmac in each vendor's documented format (independently of the Rust verifier that the
unit tests in src/inbound/verify.rs run against them). Bodies follow the vendors' documented
example payloads. Rerun after changing a vector; the output is deterministic."""
import base64, hashlib, hmac, json, os, urllib.parse

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "inbound")
NOW_S = 1764763200  # 2025-12-03T12:00:00Z
URL = "https://bridge.example.com/hooks/acme/{}"


def hs(key: bytes, msg: bytes):
    return hmac.new(key, msg, hashlib.sha256)


def write(kind, secret, headers, body, url=None, method="POST", now_ms=NOW_S * 1000):
    vec = {"kind": kind, "secret": secret, "method": method, "url": url or URL.format(kind),
           "headers": headers, "body": body, "now_ms": now_ms}
    with open(os.path.join(OUT, f"{kind}.json"), "w") as f:
        json.dump(vec, f, indent=2)
        f.write("\n")


# Calendly: Calendly-Webhook-Signature: t=<ts>,v1=<hex hmac-sha256 of "<t>.<body>">
body = json.dumps({"created_at": "2025-12-03T11:59:58.000000Z", "created_by": "https://api.calendly.com/users/AAAA",
                   "event": "invitee.created", "payload": {"uri": "https://api.calendly.com/scheduled_events/EV1/invitees/INV1",
                   "name": "Ana Lima", "email": "ana@example.com", "status": "active", "text_reminder_number": "+14155552671",
                   "questions_and_answers": []}}, separators=(",", ":"))
key = "5mEzn9C-I28UtwOjZJtFoob0sAAFZ95GbZkqj4y3i0I"
t = str(NOW_S - 30)
write("calendly", key, [["Calendly-Webhook-Signature", f"t={t},v1={hs(key.encode(), f'{t}.{body}'.encode()).hexdigest()}"]], body)

# Cal.com: X-Cal-Signature-256: hex hmac-sha256 of the body
body = json.dumps({"triggerEvent": "BOOKING_CANCELLED", "createdAt": "2025-12-03T11:59:00.000Z",
                   "payload": {"uid": "bk_8Hq2", "title": "Intro call", "attendees": [{"name": "Ana", "email": "ana@example.com",
                   "timeZone": "America/New_York", "phoneNumber": "+14155552671"}], "responses": {"attendeePhoneNumber": {"value": "+14155552671"}}}},
                  separators=(",", ":"))
key = "calcom-webhook-secret-1"
write("calcom", key, [["X-Cal-Signature-256", hs(key.encode(), body.encode()).hexdigest()]], body)

# Shopify: X-Shopify-Hmac-Sha256: base64 hmac-sha256 of the body (app client secret)
body = json.dumps({"id": 820982911946154508, "email": "jon@example.com", "phone": "+14155552671",
                   "customer": {"first_name": "Jon", "phone": "+14155552671"}, "total_price": "403.00"}, separators=(",", ":"))
key = "shpss_0123456789abcdef0123456789abcdef"
write("shopify", key, [["X-Shopify-Hmac-Sha256", base64.b64encode(hs(key.encode(), body.encode()).digest()).decode()],
                        ["X-Shopify-Topic", "orders/create"], ["X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"],
                        ["X-Shopify-Shop-Domain", "example.myshopify.com"]], body)

# HubSpot v3: base64 hmac-sha256 of method + uri + body + timestamp(ms)
body = json.dumps([{"eventId": 1001, "subscriptionId": 25, "portalId": 123, "appId": 456, "occurredAt": (NOW_S - 5) * 1000,
                    "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 987,
                    "properties": {"firstname": "Ana", "phone": "+14155552671"}}], separators=(",", ":"))
key = "hubspot-client-secret-0123"
ts = str((NOW_S - 10) * 1000)
url = URL.format("hubspot") + "?portal=123"
sig = base64.b64encode(hs(key.encode(), ("POST" + url + body + ts).encode()).digest()).decode()
write("hubspot", key, [["X-HubSpot-Signature-v3", sig], ["X-HubSpot-Request-Timestamp", ts],
                        ["X-HubSpot-Signature-Version", "v3"]], body, url=url)

# Stripe: Stripe-Signature: t=<ts>,v1=<hex hmac-sha256 of "<t>.<body>"> keyed by the whole whsec_ string
body = json.dumps({"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "type": "invoice.payment_failed",
                   "data": {"object": {"id": "in_1", "customer_phone": "+14155552671", "customer_name": "Ana"}}}, separators=(",", ":"))
key = "whsec_test_0123456789abcdef"
t = str(NOW_S - 60)
write("stripe", key, [["Stripe-Signature", f"t={t},v1={hs(key.encode(), f'{t}.{body}'.encode()).hexdigest()},v0=deadbeef"]], body)

# WhatsApp / Meta: X-Hub-Signature-256: sha256=<hex hmac-sha256 of the body> (app secret)
body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages",
                   "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                   "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                   "messages": [{"from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                   "timestamp": "1749416383", "type": "text", "text": {"body": "Call me back please"}}]}}]}]}, separators=(",", ":"))
key = "meta-app-secret-0123456789"
write("whatsapp", key, [["X-Hub-Signature-256", "sha256=" + hs(key.encode(), body.encode()).hexdigest()]], body)

# Twilio (SMS reply): X-Twilio-Signature = base64 hmac-sha1(auth token, url + sorted key+value)
params = {"MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f", "AccountSid": "AC0123456789abcdef0123456789abcdef",
          "From": "+14155552671", "To": "+15005550006", "Body": "STOP", "NumMedia": "0", "SmsStatus": "received"}
key = "0123456789abcdef0123456789abcdef"
url = URL.format("twilio")
msg = url + "".join(k + params[k] for k in sorted(params))
sig = base64.b64encode(hmac.new(key.encode(), msg.encode(), hashlib.sha1).digest()).decode()
write("twilio", key, [["X-Twilio-Signature", sig], ["Content-Type", "application/x-www-form-urlencoded"]], urllib.parse.urlencode(params))

# Standard Webhooks: webhook-signature: v1,<base64 hmac-sha256 of "<id>.<ts>.<body>"> keyed by base64-decoded whsec_ secret
body = json.dumps({"type": "lead.created", "timestamp": "2025-12-03T11:59:59Z",
                   "data": {"phone": "+14155552671", "first_name": "Ana"}}, separators=(",", ":"))
raw = bytes(range(32))
key = "whsec_" + base64.b64encode(raw).decode()
mid, t = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", str(NOW_S - 1)
sig = base64.b64encode(hs(raw, f"{mid}.{t}.{body}".encode()).digest()).decode()
write("standard", key, [["webhook-id", mid], ["webhook-timestamp", t], ["webhook-signature", f"v1,AAAA v1,{sig}"]], body)
