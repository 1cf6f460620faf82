// A swarm of bittorrent-dht nodes on 127.0.0.1, driven by JSON lines on stdin, reporting
// JSON lines on stdout. Used by tests/tests/interop_js_dht.rs.
//
//   node js_dht_swarm.mjs [COUNT]
//
// Output (one JSON object per line):
//   {"event":"ready","nodes":[{"index","host","port","id"}]}   once every node knows the others
//   {"event":"node","index":i,"host","port","id"}              a node entered node i's table
//   {"event":"warning","index":i,"message"}                    k-rpc warnings (diagnostics)
//   {"reply":CMD,"seq":N,...}                                  the answer to a command
//
// Commands (one JSON object per line, each with a "seq" echoed in its reply):
//   {"cmd":"add_node","index":i,"host","port"}       dht.addNode({host, port}) (pings first)
//   {"cmd":"announce","index":i,"info_hash":hex,"port":p}   dht.announce(ih, port)
//   {"cmd":"lookup","index":i,"info_hash":hex}       dht.lookup(ih); the peers seen for ih
//   {"cmd":"put_immutable","index":i,"data":hex}     dht.put({v}): v is the byte string `data`
//   {"cmd":"put_mutable","index":i,"seed":hex,"data":hex,"salt":hex,"seq_number":n}
//        dht.put({k, v, seq, salt, sign}) with the ed25519 key made from the 32-byte seed
//   {"cmd":"get","index":i,"target":hex,"salt":hex|null}    dht.get(target, {salt, cache: false})
//      replies: put: {error, target, n}; get: {error, found, v (hex when a byte string), seq_number, k}
//   {"cmd":"tables"}                                 every node's routing table (ids, addresses)
//   {"cmd":"exit"}
//
// Every socket is bound to 127.0.0.1 and bootstrap is off: nothing leaves the machine.
import DHT from 'bittorrent-dht'
import readline from 'readline'
import sodium from 'sodium-universal'

const count = Number(process.argv[2] || 10)
const nodes = []

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function hex (buf) {
  return Buffer.isBuffer(buf) ? buf.toString('hex') : (buf ? Buffer.from(buf).toString('hex') : null)
}

// BEP 44 signatures: ed25519 from libsodium (sodium-universal).
function verify (sig, msg, pk) {
  return sodium.crypto_sign_verify_detached(sig, msg, pk)
}

function keypair (seed) {
  const pk = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES)
  const sk = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES)
  sodium.crypto_sign_seed_keypair(pk, sk, Buffer.from(seed, 'hex'))
  return { pk, sk }
}

function putReply (seq) {
  return (err, target, n) => out({ reply: 'put', seq, error: err ? String(err.message) : null, target: hex(target), n: n ?? null })
}

function table (dht) {
  return dht.nodes.toArray().map(n => ({ host: n.host, port: n.port, id: hex(n.id) }))
}

async function main () {
  for (let i = 0; i < count; i++) {
    // `bootstrap: false`: no routers; the nodes are linked below with addNode.
    // `verify`: without it bittorrent-dht refuses mutable puts (400) and ignores mutable gets.
    const dht = new DHT({ bootstrap: false, verify })
    dht.on('node', node => {
      out({ event: 'node', index: i, host: node.host || node.address, port: node.port, id: hex(node.id) })
    })
    dht.on('warning', err => out({ event: 'warning', index: i, message: String(err && err.message) }))
    dht.on('error', err => out({ event: 'error', index: i, message: String(err && err.message) }))
    await new Promise(resolve => dht.listen(0, '127.0.0.1', resolve))
    nodes.push(dht)
  }
  // Full mesh: each node pings every other one (addNode without an id pings first).
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < count; j++) {
      if (i !== j) nodes[i].addNode({ host: '127.0.0.1', port: nodes[j].address().port })
    }
  }
  const deadline = Date.now() + 20000
  while (nodes.some(d => d.nodes.count() < count - 1) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  out({
    event: 'ready',
    nodes: nodes.map((d, index) => ({ index, host: '127.0.0.1', port: d.address().port, id: hex(d.nodeId) })),
    table_sizes: nodes.map(d => d.nodes.count())
  })
}

function handle (cmd) {
  const seq = cmd.seq
  const dht = nodes[cmd.index]
  switch (cmd.cmd) {
    case 'add_node':
      dht.addNode({ host: cmd.host, port: cmd.port })
      return out({ reply: 'add_node', seq })
    case 'announce':
      return dht.announce(cmd.info_hash, cmd.port, (err, n) => {
        out({ reply: 'announce', seq, error: err ? String(err.message) : null, n: n ?? null })
      })
    case 'lookup': {
      const peers = []
      const onpeer = (peer, infoHash, from) => {
        if (hex(infoHash) !== cmd.info_hash) return
        peers.push({ host: peer.host, port: peer.port, from: from ? `${from.host || from.address}:${from.port}` : null })
      }
      dht.on('peer', onpeer)
      return dht.lookup(cmd.info_hash, (err, n) => {
        dht.removeListener('peer', onpeer)
        out({ reply: 'lookup', seq, error: err ? String(err.message) : null, n: n ?? null, peers })
      })
    }
    case 'put_immutable':
      dht.put({ v: Buffer.from(cmd.data, 'hex') }, putReply(seq))
      return
    case 'put_mutable': {
      const { pk, sk } = keypair(cmd.seed)
      const sign = buf => {
        const sig = Buffer.alloc(sodium.crypto_sign_BYTES)
        sodium.crypto_sign_detached(sig, buf, sk)
        return sig
      }
      const opts = { k: pk, v: Buffer.from(cmd.data, 'hex'), seq: cmd.seq_number, sign }
      if (cmd.salt) opts.salt = Buffer.from(cmd.salt, 'hex')
      dht.put(opts, putReply(seq))
      return
    }
    case 'get': {
      // `cache: false`: ask the network even when this node stores the item itself.
      const opts = cmd.salt ? { salt: Buffer.from(cmd.salt, 'hex'), cache: false } : { cache: false }
      return dht.get(cmd.target, opts, (err, res) => {
        const v = res && res.v
        out({
          reply: 'get',
          seq,
          error: err ? String(err.message) : null,
          found: !!res,
          v: Buffer.isBuffer(v) ? hex(v) : (v === undefined ? null : String(v)),
          seq_number: res && typeof res.seq === 'number' ? res.seq : null,
          k: res && res.k ? hex(res.k) : null
        })
      })
    }
    case 'tables':
      return out({ reply: 'tables', seq, tables: nodes.map(table) })
    case 'exit':
      return shutdown()
    default:
      return out({ reply: 'unknown', seq, cmd: cmd.cmd })
  }
}

function shutdown () {
  for (const d of nodes) d.destroy()
  process.exit(0)
}

main().then(() => {
  const rl = readline.createInterface({ input: process.stdin })
  rl.on('line', line => {
    if (!line.trim()) return
    try {
      handle(JSON.parse(line))
    } catch (err) {
      out({ event: 'error', message: String(err && err.stack) })
    }
  })
  // The test closes our stdin (or dies): go too.
  rl.on('close', shutdown)
}, err => {
  out({ event: 'error', message: String(err && err.stack) })
  process.exit(1)
})
process.on('SIGTERM', shutdown)
