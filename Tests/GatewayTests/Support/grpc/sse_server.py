"""A server-sent events upstream for the stream tests.

    python3 sse_server.py PORT

GET /events?n=N&every=SECONDS sends N events, one each SECONDS, then ends the stream;
GET /idle sends one event and then nothing for a minute. Prints "ready PORT"."""
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            if url.path == "/idle":
                self.chunk("data: first\n\n")
                time.sleep(60)
            else:
                n = int(q.get("n", ["5"])[0])
                every = float(q.get("every", ["0.2"])[0])
                for i in range(n):
                    self.chunk(f"id: {i}\ndata: event {i}\n\n")
                    time.sleep(every)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
