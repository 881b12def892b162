#!/usr/bin/env python3
# Creates N queues (each with a 64-byte tag) through the gateway on one keep-alive connection and
# prints the time of the last 500 creates: what a metadata change costs as metadata grows.
#   python3 bench/meta_changes.py HTTP_PORT N
import http.client, sys, time, urllib.parse
port = int(sys.argv[1]); n = int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port)
def create(name):
    body = urllib.parse.urlencode({"Action": "CreateQueue", "QueueName": name, "Tag.1.Key": "team", "Tag.1.Value": "x" * 64})
    conn.request("POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse(); r.read()
    assert r.status == 200, r.status
marks = {}
t0 = time.time()
for i in range(n):
    if i in (0, n - 500):
        marks[i] = time.time()
    create(f"q{i}")
end = time.time()
print(f"{n} queues: total {end - t0:.1f} s; last 500 creates: {(end - marks[n - 500]) / 500 * 1000:.2f} ms each")
