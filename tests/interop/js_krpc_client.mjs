// The k-rpc client (mafintosh/k-rpc 5) queries one node and prints what it decoded, as JSON
// lines on stdout. Used by tests/tests/interop_js_krpc.rs.
//
//   node js_krpc_client.mjs HOST PORT
//
// Output: {"event":"ready","id":hex,"port":p}, then one line per query:
//   {"query":NAME,"error":null|message,"code":n|null,"t":hex,"y":..,"v":hex|null,"ip":hex|null,
//    "r":{key: hex or number, ...},"r_keys":[...], "peer":"host:port"}
// then {"event":"done"}. Bytes are hex; integers are numbers.
//
// The socket is bound to 127.0.0.1 and bootstrap is off: nothing leaves the machine.
import krpc from 'k-rpc'

const [host, portArg] = process.argv.slice(2)
const target = { host, port: Number(portArg) }
const INFO_HASH = Buffer.from('5a'.repeat(20), 'hex')
const TARGET = Buffer.from('a5'.repeat(20), 'hex')

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function plain (value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString('hex')
  if (Array.isArray(value)) return value.map(plain)
  if (value && typeof value === 'object') {
    const o = {}
    for (const k of Object.keys(value)) o[k] = plain(value[k])
    return o
  }
  return value
}

// `nodes: false`: no bootstrap routers.
const rpc = krpc({ nodes: false, timeout: 5000 })
rpc.on('warning', err => out({ event: 'warning', message: String(err && err.message) }))

function query (name, message) {
  return new Promise(resolve => {
    rpc.query(target, message, (err, res, peer) => {
      const line = { query: name, error: err ? String(err.message) : null, code: err ? (err.code ?? null) : null }
      if (res) {
        line.t = plain(res.t)
        line.y = res.y ? Buffer.from(res.y).toString() : null
        line.v = res.v ? plain(res.v) : null
        line.ip = res.ip ? plain(res.ip) : null
        line.r = res.r ? plain(res.r) : null
        line.r_keys = res.r ? Object.keys(res.r).sort() : []
        line.e = res.e ? plain(res.e) : null
      }
      if (peer) line.peer = `${peer.address || peer.host}:${peer.port}`
      out(line)
      resolve()
    })
  })
}

rpc.socket.bind(0, '127.0.0.1', async () => {
  out({ event: 'ready', id: rpc.id.toString('hex'), port: rpc.socket.socket.address().port })
  await query('ping', { q: 'ping' })
  await query('find_node', { q: 'find_node', a: { target: TARGET } })
  await query('get_peers', { q: 'get_peers', a: { info_hash: INFO_HASH } })
  // The token from get_peers lets us announce; then get_peers again sees ourselves.
  await new Promise(resolve => {
    rpc.query(target, { q: 'get_peers', a: { info_hash: INFO_HASH } }, (err, res) => {
      if (err || !res.r || !res.r.token) {
        out({ query: 'announce_peer', error: 'no token: ' + (err && err.message) })
        return resolve()
      }
      const a = { info_hash: INFO_HASH, port: 6999, token: res.r.token }
      query('announce_peer', { q: 'announce_peer', a }).then(resolve)
    })
  })
  await query('get_peers_after_announce', { q: 'get_peers', a: { info_hash: INFO_HASH } })
  await query('announce_peer_bad_token', {
    q: 'announce_peer', a: { info_hash: INFO_HASH, port: 6999, token: Buffer.from('nope') }
  })
  await query('unknown_method', { q: 'frobnicate', a: {} })
  out({ event: 'done' })
  rpc.destroy()
})
