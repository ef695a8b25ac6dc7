"""A Tally REST client in Python's standard library only (used by tests/integration/rest.int.test.ts).

Tracks one event, reads the license's usage, and shows a refusal without a key; prints JSON.
Environment: TALLY_URL, TALLY_KEY, LICENSE_ID.
"""
import json
import os
import urllib.error
import urllib.request

BASE = os.environ["TALLY_URL"] + "/api/v1"
KEY = os.environ["TALLY_KEY"]
LICENSE = os.environ["LICENSE_ID"]


def call(method, path, body=None, key=KEY):
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


status, tracked = call("POST", "/events", {"licenseId": LICENSE, "usageType": "py_call", "quantity": "3.5", "userId": "py-user"})
assert status == 200, (status, tracked)
status, usage = call("GET", "/licenses/" + LICENSE + "/usage")
assert status == 200, (status, usage)
status, refused = call("GET", "/licenses/" + LICENSE + "/usage", key=None)
print(json.dumps({"tracked": tracked, "usage": usage, "refused": {"status": status, "code": refused["error"]["code"]}}))
