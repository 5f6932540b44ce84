"""Who may act (pure): the token, the origin, the body's type and the Host header."""

from __future__ import annotations

from caviar.serve.security import cookie_name, host_ok, is_loopback, new_token, refusal, token_ok

TOKEN = "s3cret-token"
OWN = {"host": "127.0.0.1:8765", "content-type": "application/json"}


def test_an_action_needs_the_token_in_the_header_or_the_cookie():
    assert refusal({**OWN, "x-caviar-token": TOKEN}, token=TOKEN, cookie=None) is None
    assert refusal({**OWN, "origin": "http://127.0.0.1:8765"}, token=TOKEN, cookie=TOKEN) is None
    for headers, cookie in (({**OWN}, None), ({**OWN, "x-caviar-token": "wrong"}, None), ({**OWN}, "")):
        assert refusal(headers, token=TOKEN, cookie=cookie).startswith("token:")


def test_an_action_from_another_origin_or_not_json_is_refused_even_with_the_token():
    with_token = {**OWN, "x-caviar-token": TOKEN}
    assert refusal({**with_token, "origin": "http://evil.example"}, token=TOKEN, cookie=TOKEN).startswith("origin:")
    assert refusal({**with_token, "origin": "http://127.0.0.1:9999"}, token=TOKEN, cookie=None).startswith("origin:")
    assert refusal({**with_token, "sec-fetch-site": "cross-site"}, token=TOKEN, cookie=None).startswith("origin:")
    form = {**with_token, "content-type": "application/x-www-form-urlencoded"}
    assert refusal(form, token=TOKEN, cookie=None).startswith("content-type:")


def test_tokens_are_fresh_and_compared_whole():
    assert new_token() != new_token() and len(new_token()) >= 40
    assert token_ok("abc", "abc") and not token_ok("abc", "ab") and not token_ok("abc", None)
    assert cookie_name(8765) != cookie_name(8766)


def test_a_loopback_server_answers_loopback_host_names_only():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.1"):
        assert host_ok(host, loopback=True)
    for host in ("evil.example:8765", "attacker.com", None, ""):
        assert not host_ok(host, loopback=True)
    assert host_ok("my-box.lan:8765", loopback=False)
