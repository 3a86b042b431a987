#!/usr/bin/env python3
"""Streaming CGI echo: copies the request body to the response, upper-cased.

Made for testing body streaming in both directions: it reads stdin in 64 KiB chunks
and writes and flushes each one as it goes, and it sends no Content-Length, so the
server must stream the output (chunked on HTTP/1.1, or close-delimited) rather than
buffer the whole response. Only ASCII letters change (bytes.upper), so binary input
keeps its length. Reads to EOF; the server closes our stdin after CONTENT_LENGTH bytes.
"""
import sys

CHUNK = 64 * 1024


def main():
    out = sys.stdout.buffer
    out.write(b"Content-Type: application/octet-stream\r\n\r\n")
    out.flush()
    stdin = sys.stdin.buffer.raw  # unbuffered: read() returns what is available, up to CHUNK
    while True:
        chunk = stdin.read(CHUNK)
        if not chunk:
            break
        out.write(chunk.upper())
        out.flush()


if __name__ == "__main__":
    main()
