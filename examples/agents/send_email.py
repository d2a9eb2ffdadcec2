#!/usr/bin/env python3
"""A small agent that sends one email through airlock with Python requests.

    HTTP_PROXY=http://127.0.0.1:3128 python3 examples/agents/send_email.py [MAIL_API_URL] [--wait SECONDS]

It prints what airlock answered: the held answer (the email was NOT sent and
waits for a reviewer), or, with --wait and an approval in time, the mail API's
own response.
"""
import argparse
import json
import os
import sys

import requests

parser = argparse.ArgumentParser(description="Send one email through airlock.")
parser.add_argument("api", nargs="?", default="http://localhost:8025", help="the mail API's base URL")
parser.add_argument("--wait", type=int, metavar="SECONDS", help="ask airlock to wait for a decision (Prefer: wait)")
args = parser.parse_args()
url = args.api.rstrip("/") + "/v3/mail/send"
wait = args.wait

email = {
    "personalizations": [{"to": [{"email": "client@example.com"}]}],
    "from": {"email": "sales@example.com"},
    "subject": "Your quote",
    "content": [{"type": "text/plain", "value": "Hello, the total is 1,200 EUR."}],
}
headers = {
    "Authorization": "Bearer not-a-real-key",
    "Airlock-Trigger": "The client asked for a quote",
    "Airlock-Agent": "quote-agent",
}
if wait:
    headers["Prefer"] = f"wait={wait}"

if "HTTP_PROXY" not in os.environ and "http_proxy" not in os.environ:
    print("note: HTTP_PROXY is not set, so this goes straight to the API", file=sys.stderr)

res = requests.post(url, json=email, headers=headers, timeout=(wait or 0) + 30)
print(f"HTTP {res.status_code}")
for name in ("Airlock-Hold", "Airlock-State", "Preference-Applied"):
    if name in res.headers:
        print(f"{name}: {res.headers[name]}")
try:
    print(json.dumps(res.json(), indent=2))
except ValueError:
    print(res.text)
