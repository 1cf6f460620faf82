#!/usr/bin/env python3
"""A few libtorrent DHT nodes on 127.0.0.1, driven by JSON lines on stdin, reporting JSON lines
on stdout. Used by tests/tests/interop_libtorrent.rs.

    python3 lt_swarm.py [COUNT [READ_ONLY [FIRST_HOST]]]

COUNT nodes (default 3), then READ_ONLY more (default 0) in BEP 43 read-only mode
(`dht_read_only`): they query with `ro=1` and answer nothing. Every node listens on 127.0.0.1,
or with FIRST_HOST (2-200) node i on 127.0.0.(FIRST_HOST + i): BEP 33 counts the peers of a
swarm by IP address, so a scrape test needs announces from addresses of their own.

Output (one JSON object per line):
  {"event":"ready","version":V,"nodes":[{"index","host","port","id","read_only"}]}
  {"event":"peers","index":i,"info_hash":hex,"peers":[[host,port],...]}  a dht_get_peers_reply_alert
  {"event":"samples","index":i,"host","port","interval":s,"num":n,"samples":[hex,...],"nodes":n}
        a dht_sample_infohashes_alert (interval in seconds, num = num_infohashes)
  {"event":"log","index":i,"message":...}        dht_log/dht_pkt lines naming a watched address
  {"reply":CMD,"seq":N,...}                      the answer to a command

Commands (one JSON object per line, each with a "seq" echoed in its reply):
  {"cmd":"add_node","index":i|null,"host","port"}   ses.add_dht_node((host, port)); null: every node
  {"cmd":"watch","host","port"}                     forward log lines and packets naming host:port
  {"cmd":"announce","index":i,"info_hash":hex,"port":p,"seed":b}   ses.dht_announce(ih, port, flags):
        flags 1 (libtorrent's dht::announce::seed) when "seed" is true (BEP 33), else 0
  {"cmd":"sample","index":i,"host","port","target":hex}   ses.dht_sample_infohashes((host, port), target)
        (BEP 51); the answer comes as a "samples" event
  {"cmd":"get_peers","index":i,"info_hash":hex}     ses.dht_get_peers(ih); replies come as "peers"
  {"cmd":"live_nodes","index":i}                    the routing table (dht_live_nodes_alert)
  {"cmd":"put_immutable","index":i,"value":hex}     ses.dht_put_immutable_item(bdecode(value))
  {"cmd":"put_mutable","index":i,"secret":hex,"public":hex,"data":hex,"salt":hex}
        ses.dht_put_mutable_item(secret, public, data, salt): libtorrent stores the byte string
        `data` (bencoded by libtorrent) with seq = the seq it found + 1 and signs it with the
        64-byte expanded secret key (its ed25519 format: clamped scalar, then nonce prefix)
  {"cmd":"get_immutable","index":i,"target":hex}    ses.dht_get_immutable_item(target)
  {"cmd":"get_mutable","index":i,"public":hex,"salt":hex}  ses.dht_get_mutable_item(key, salt)
Item events (BEP 44; "item" is the value bencoded, hex, "" when nothing was found):
  {"event":"put","index":i,"target":hex,"seq":n,"num_success":n}       a dht_put_alert
  {"event":"immutable","index":i,"target":hex,"item":hex}              a dht_immutable_item_alert
  {"event":"mutable","index":i,"key":hex,"salt":hex,"seq":n,"item":hex,"authoritative":b}
  {"cmd":"exit"}

Every socket is bound to a loopback address, and no bootstrap router, LSD, UPnP or NAT-PMP is used:
nothing leaves the machine.
"""

import json
import queue
import re
import sys
import threading
import time

import libtorrent as lt

# What a loopback test network needs (the defaults are tuned against abuse on the Internet):
SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": True,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "enable_incoming_utp": False,
    "enable_outgoing_utp": False,
    # No router: the default is dht.libtorrent.org:25401.
    "dht_bootstrap_nodes": "",
    # Default true: one routing-table entry per IP, one node per /24 per bucket and per lookup.
    # Every node here is 127.0.0.1.
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    # Default 5 packets/s per IP (over 10 s) before a 300 s ban; every node here shares one IP.
    "dht_block_ratelimit": 100000,
    # Default 8000 B/s of replies; raised so that no answer is dropped for quota.
    "dht_upload_rate_limit": 10000000,
    # BEP 42 is not enforced by default (dht_enforce_node_id = False) and loopback is exempt.
    "dht_enforce_node_id": False,
    # BEP 51: libtorrent draws a node's sample once per interval (default 21600 s) and hands out
    # the same one until then; 0 draws it afresh for every query, so that a sample taken after
    # the announces of a test holds them all.
    "dht_sample_infohashes_interval": 0,
    "alert_mask": lt.alert_category.dht | lt.alert_category.dht_operation | lt.alert_category.dht_log
    | lt.alert_category.error | lt.alert_category.status,
}

ID_LINE = re.compile(r"starting .* DHT tracker with node id: ([0-9a-f]{40})")


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Node:
    def __init__(self, index, read_only=False, host="127.0.0.1"):
        self.index = index
        self.read_only = read_only
        self.host = host
        self.ses = lt.session(dict(SETTINGS, dht_read_only=read_only, listen_interfaces="%s:0" % host))
        self.port = None
        self.id = None
        self.pending_live = None

    def pump(self, watched):
        for a in self.ses.pop_alerts():
            name = type(a).__name__
            if name == "dht_log_alert":
                msg = a.message()
                m = ID_LINE.search(msg)
                if m:
                    self.id = m.group(1)
                if any(w in msg for w in watched):
                    out({"event": "log", "index": self.index, "message": msg[:400]})
            elif name == "dht_pkt_alert":
                msg = a.message()
                if any(w in msg for w in watched):
                    out({"event": "log", "index": self.index, "message": msg[:400],
                         "packet": bytes(a.pkt_buf).hex()})
            elif name == "dht_get_peers_reply_alert":
                out({"event": "peers", "index": self.index, "info_hash": str(a.info_hash),
                     "peers": [[h, p] for (h, p) in a.peers()]})
            elif name == "dht_sample_infohashes_alert":
                host, port = a.endpoint
                out({"event": "samples", "index": self.index, "host": host, "port": port,
                     "interval": int(a.interval.total_seconds()), "num": a.num_infohashes,
                     "samples": [str(h) for h in a.samples], "nodes": a.num_nodes})
            elif name == "dht_live_nodes_alert":
                nodes = []
                for n in a.nodes:
                    ep = n.get("endpoint")
                    nodes.append({"id": str(n.get("nid")), "host": ep[0], "port": ep[1]})
                out({"reply": "live_nodes", "seq": self.pending_live, "index": self.index, "nodes": nodes})
            elif name == "dht_put_alert":
                out({"event": "put", "index": self.index, "target": str(a.target), "seq": a.seq,
                     "num_success": a.num_success})
            elif name == "dht_immutable_item_alert":
                out({"event": "immutable", "index": self.index, "target": str(a.target),
                     "item": bencoded_hex(a.item)})
            elif name == "dht_mutable_item_alert":
                out({"event": "mutable", "index": self.index, "key": bytes(a.key).hex(),
                     "salt": as_bytes(a.salt).hex(), "seq": a.seq, "item": bencoded_hex(a.item),
                     "authoritative": bool(a.authoritative)})
            elif name in ("listen_failed_alert", "dht_error_alert", "udp_error_alert"):
                out({"event": "error", "index": self.index, "message": a.message()})


def as_bytes(x):
    return x.encode("latin-1") if isinstance(x, str) else bytes(x)


def bencoded_hex(item):
    """An item's value, bencoded, in hex; "" for libtorrent's "not found" (an undefined entry)."""
    if item is None:
        return ""
    data = lt.bencode(item)
    return "" if data in (b"", b"0:") and not item else bytes(data).hex()


def read_stdin(q):
    for line in sys.stdin:
        line = line.strip()
        if line:
            q.put(line)
    q.put(None)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    read_only = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    first_host = int(sys.argv[3]) if len(sys.argv) > 3 else None
    host = (lambda i: "127.0.0.%d" % (first_host + i)) if first_host else (lambda i: "127.0.0.1")
    nodes = [Node(i, i >= count, host(i)) for i in range(count + read_only)]
    watched = []
    deadline = time.time() + 20
    while time.time() < deadline and any(n.id is None or n.ses.listen_port() == 0 for n in nodes):
        for n in nodes:
            n.pump(watched)
        time.sleep(0.05)
    for n in nodes:
        n.port = n.ses.listen_port()
    # Introduce every node to every other one.
    for n in nodes:
        for m in nodes:
            if n is not m:
                n.ses.add_dht_node((m.host, m.port))
    out({"event": "ready", "version": lt.__version__,
         "nodes": [{"index": n.index, "host": n.host, "port": n.port, "id": n.id, "read_only": n.read_only}
                   for n in nodes]})

    commands = queue.Queue()
    threading.Thread(target=read_stdin, args=(commands,), daemon=True).start()
    while True:
        try:
            line = commands.get(timeout=0.05)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            cmd = json.loads(line)
            seq = cmd.get("seq")
            c = cmd.get("cmd")
            if c == "exit":
                break
            elif c == "add_node":
                targets = nodes if cmd.get("index") is None else [nodes[cmd["index"]]]
                for n in targets:
                    n.ses.add_dht_node((cmd["host"], cmd["port"]))
                out({"reply": "add_node", "seq": seq})
            elif c == "watch":
                watched.append("%s:%d" % (cmd["host"], cmd["port"]))
                out({"reply": "watch", "seq": seq})
            elif c == "announce":
                ih = lt.sha1_hash(bytes.fromhex(cmd["info_hash"]))
                flags = 1 if cmd.get("seed") else 0  # libtorrent's dht::announce::seed = 0_bit
                nodes[cmd["index"]].ses.dht_announce(ih, cmd["port"], flags)
                out({"reply": "announce", "seq": seq})
            elif c == "get_peers":
                ih = lt.sha1_hash(bytes.fromhex(cmd["info_hash"]))
                nodes[cmd["index"]].ses.dht_get_peers(ih)
                out({"reply": "get_peers", "seq": seq})
            elif c == "sample":
                target = lt.sha1_hash(bytes.fromhex(cmd["target"]))
                nodes[cmd["index"]].ses.dht_sample_infohashes((cmd["host"], cmd["port"]), target)
                out({"reply": "sample", "seq": seq})
            elif c == "live_nodes":
                n = nodes[cmd["index"]]
                n.pending_live = seq
                n.ses.dht_live_nodes(lt.sha1_hash(bytes.fromhex(n.id)))
            elif c == "put_immutable":
                target = nodes[cmd["index"]].ses.dht_put_immutable_item(lt.bdecode(bytes.fromhex(cmd["value"])))
                out({"reply": "put_immutable", "seq": seq, "target": str(target)})
            elif c == "put_mutable":
                nodes[cmd["index"]].ses.dht_put_mutable_item(
                    bytes.fromhex(cmd["secret"]), bytes.fromhex(cmd["public"]),
                    bytes.fromhex(cmd["data"]), bytes.fromhex(cmd["salt"]))
                out({"reply": "put_mutable", "seq": seq})
            elif c == "get_immutable":
                nodes[cmd["index"]].ses.dht_get_immutable_item(lt.sha1_hash(bytes.fromhex(cmd["target"])))
                out({"reply": "get_immutable", "seq": seq})
            elif c == "get_mutable":
                nodes[cmd["index"]].ses.dht_get_mutable_item(bytes.fromhex(cmd["public"]), bytes.fromhex(cmd["salt"]))
                out({"reply": "get_mutable", "seq": seq})
            else:
                out({"reply": "unknown", "seq": seq, "cmd": c})
        for n in nodes:
            n.pump(watched)


if __name__ == "__main__":
    main()
