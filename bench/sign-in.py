#!/usr/bin/env python3
"""Signs a person in to the gateway the way Claude Code and a browser do, and prints their access token.

usage: bench/sign-in.py GATEWAY_URL EMAIL PASSWORD

Device authorization, the verification page, the identity provider's sign-in form (the development provider's:
username, password, returnUrl and its antiforgery field), back to the gateway's callback, then the device-code grant.
The benchmark uses it to compare a signed-in person's token with a device's on the request path.
"""
import html
import http.cookiejar
import json
import re
import sys
import urllib.parse
import urllib.request

gateway, email, password = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def post(opener, url, fields):
    data = urllib.parse.urlencode(fields).encode()
    try:
        with opener.open(urllib.request.Request(url, data=data, method="POST"), timeout=30) as response:
            return response.status, response.read().decode(), response.geturl()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), url


def field(page, name):
    match = re.search(r'name="%s"[^>]*value="([^"]*)"' % re.escape(name), page)
    if not match:
        sys.exit("no %s field in the page" % name)
    return html.unescape(match.group(1))


status, body, _ = post(urllib.request.build_opener(), gateway + "/oauth/device_authorization", {"surface": "claude_code"})
if status != 200:
    sys.exit("device authorization answered %d: %s" % (status, body))
authorization = json.loads(body)

with browser.open(authorization["verification_uri_complete"], timeout=30) as page:
    csrf = field(page.read().decode(), "csrf")
# Continue: the gateway sends the browser to the provider, whose sign-in form it lands on.
status, login, login_url = post(browser, gateway + "/device", {"user_code": authorization["user_code"], "csrf": csrf})
if status != 200 or "returnUrl" not in login:
    sys.exit("the provider's sign-in form did not show (%d at %s)" % (status, login_url))
form_action = urllib.parse.urljoin(login_url, "/account/login")
status, done, done_url = post(browser, form_action, {
    "username": email, "password": password, "returnUrl": field(login, "returnUrl"),
    "__RequestVerificationToken": field(login, "__RequestVerificationToken"),
})
if status != 200 or "You are signed in" not in done:
    sys.exit("the sign-in did not finish (%d at %s)" % (status, done_url))

status, body, _ = post(urllib.request.build_opener(), gateway + "/oauth/token", {
    "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": authorization["device_code"],
})
if status != 200:
    sys.exit("the token endpoint answered %d: %s" % (status, body))
print(json.loads(body)["access_token"])
