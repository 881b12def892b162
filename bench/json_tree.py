#!/usr/bin/env python3
# Sends one hostile PutRecords body (7.8 MB: 3.9 million tiny JSON values) to the gateway and
# prints the answer; compare the daemon's VmHWM before and after.
#   python3 bench/json_tree.py HTTP_PORT
import http.client, sys
port=int(sys.argv[1])
numbers=",".join(["1"]*3_900_000)
body='{"StreamName":"s","Records":[%s]}' % numbers
c=http.client.HTTPConnection("127.0.0.1",port)
c.request("POST","/",body,{"X-Amz-Target":"Kinesis_20131202.PutRecords","Content-Type":"application/x-amz-json-1.1"})
r=c.getresponse(); print(r.status, r.read()[:120])
