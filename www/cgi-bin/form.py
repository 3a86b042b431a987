#!/usr/bin/env python3
"""CGI/1.1 form demo (RFC 3875): the same form submitted by GET and by POST.

GET  -> values arrive in QUERY_STRING (section 4.1.7).
POST -> an application/x-www-form-urlencoded body arrives on stdin; CONTENT_LENGTH
        says how many bytes to read (section 4.2). The server de-chunks a chunked
        request body before it reaches us, so CONTENT_LENGTH is always what we need;
        if it is absent we read to EOF.
Everything echoed back is HTML-escaped. Standard library only.
"""
import html
import os
import sys
from urllib.parse import parse_qs

MAX_BODY = 1 << 20  # this demo refuses to buffer more than 1 MiB


def esc(value):
    return html.escape(value, quote=True)


def read_body():
    length = os.environ.get("CONTENT_LENGTH", "")
    if length.strip().isdigit():
        want = min(int(length), MAX_BODY)
        data = b""
        while len(data) < want:
            chunk = sys.stdin.buffer.read(want - len(data))
            if not chunk:
                break
            data += chunk
        return data
    return sys.stdin.buffer.read(MAX_BODY)


def first(fields, key):
    values = fields.get(key)
    return values[0] if values else None


def main():
    method = os.environ.get("REQUEST_METHOD", "GET").upper()
    query = os.environ.get("QUERY_STRING", "")
    content_length = os.environ.get("CONTENT_LENGTH", "")
    content_type = os.environ.get("CONTENT_TYPE", "")
    script = os.environ.get("SCRIPT_NAME") or "/cgi-bin/form.py"

    fields = {}
    body_note = ""
    if method == "POST":
        body = read_body()
        if content_type.split(";")[0].strip().lower() in ("", "application/x-www-form-urlencoded"):
            fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        else:
            body_note = f"{len(body)} body bytes of type {content_type} (not parsed)"
    elif method in ("GET", "HEAD"):
        fields = parse_qs(query, keep_blank_values=True)
    else:
        sys.stdout.write("Status: 405 Method Not Allowed\r\nAllow: GET, HEAD, POST\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                         "405 Method Not Allowed\n")
        return

    name = first(fields, "name")
    message = first(fields, "message")
    submitted = name is not None or message is not None

    def row(key, label, value):
        shown = esc(value) if value is not None else '<span class="empty">(none)</span>'
        return f'<dt>{label}</dt><dd id="result-{key}">{shown}</dd>'

    result = "".join([
        '<p id="result-summary">',
        (f"Received a <strong>{esc(method)}</strong> submission." if submitted
         else "Nothing submitted yet — fill in one of the forms."),
        "</p><dl>",
        row("name", "name", name),
        row("message", "message", message),
        row("method", "REQUEST_METHOD", method),
        row("query", "QUERY_STRING", query),
        row("length", "CONTENT_LENGTH", content_length or None),
        row("type", "CONTENT_TYPE", content_type or None),
        "</dl>",
        f"<p>{esc(body_note)}</p>" if body_note else "",
    ])

    action = esc(script)
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>CGI form — webserv</title>
  <link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <header class="site-header"><div class="inner">
    <a class="brand" href="/"><img src="/static/favicon.svg" alt="">webserv</a>
    <nav>
      <a href="/">Home</a>
      <a href="/upload.html">Upload</a>
      <a href="/files.html">Files</a>
      <a href="/cgi-bin/" aria-current="page">CGI</a>
      <a href="/demo/">Autoindex</a>
    </nav>
  </div></header>
  <main>
    <h1>CGI form</h1>
    <p class="lead">A Python CGI script. The first form sends its fields in the query string
      (<code>GET</code>); the second sends them as an urlencoded request body (<code>POST</code>).</p>

    <h2>Result</h2>
    <div id="result" class="result">{result}</div>

    <div class="grid-2" style="margin-top:1.5rem">
      <form id="form-get" class="stack card" method="get" action="{action}">
        <h3>Submit by GET</h3>
        <div><label for="get-name">Name</label>
          <input type="text" id="get-name" name="name" value="{esc(name or '')}"></div>
        <div><label for="get-message">Message</label>
          <textarea id="get-message" name="message">{esc(message or '')}</textarea></div>
        <div><button type="submit" id="submit-get">Send with GET</button></div>
      </form>
      <form id="form-post" class="stack card" method="post" action="{action}"
            enctype="application/x-www-form-urlencoded">
        <h3>Submit by POST</h3>
        <div><label for="post-name">Name</label>
          <input type="text" id="post-name" name="name" value="{esc(name or '')}"></div>
        <div><label for="post-message">Message</label>
          <textarea id="post-message" name="message">{esc(message or '')}</textarea></div>
        <div><button type="submit" id="submit-post">Send with POST</button></div>
      </form>
    </div>
    <p><a href="/cgi-bin/">All CGI demos</a></p>
  </main>
  <footer class="site-footer">Generated by <code>www/cgi-bin/form.py</code> through CGI/1.1.</footer>
</body>
</html>
"""
    data = page.encode("utf-8")
    out = sys.stdout.buffer
    out.write(b"Content-Type: text/html; charset=utf-8\r\n\r\n")
    if method != "HEAD":
        out.write(data)
    out.flush()


if __name__ == "__main__":
    main()
