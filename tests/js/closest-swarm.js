// Measures the JS k-rpc lookup (`closest`) on a swarm of k-rpc nodes on 127.0.0.1, for comparison
// with the krpc simulator (`simulate`, see docs/simulation.md, "JS comparison").
//
// Setup (nothing leaves 127.0.0.1):
//   mkdir -p /tmp/jsbench && cd /tmp/jsbench && npm install k-rpc@5.1.0
//   NODE_PATH=/tmp/jsbench/node_modules node tests/js/closest-swarm.js [options]
//
// Options (all optional): --nodes 200 --k 20 --concurrency 16 --answer-k 8 --lookups 50
// --seeds 2 --seed 1
//
// Every node is a k-rpc instance with the given k and concurrency. It answers `find_node` with the
// `answer-k` closest contacts of its routing table (`rpc.response(peer, q, {id}, closest)`), as a
// k-rpc application does. Nodes 0..seeds-1 are seed nodes; every node bootstraps from them with
// `populate(own id)`, one after the other (node 0 from node 1). Then `lookups` `closest` lookups
// (`find_node` toward a random target) run one at a time from random nodes.
//
// Per lookup it records:
// - queries: `find_node` queries for that target sent by the initiator's socket (the socket's
//   `query` is wrapped), bootstrap fallbacks included;
// - replies: successful replies with a valid id (k-rpc's own count, the `cb(null, n)` value);
// - recall: of the true k closest nodes (among all node ids, the initiator excluded from none),
//   the share that *replied* to the lookup (the lookup's result is its responders: `visit` sees
//   each reply); the initiator counts as found when it is one of the true k closest, because no
//   lookup queries itself. recall8 is the same for the true 8 closest.
// It prints one JSON object with per-lookup arrays and medians.
'use strict'

const krpc = require('k-rpc')
const crypto = require('crypto')

function arg (name, def) {
  const i = process.argv.indexOf('--' + name)
  return i >= 0 ? Number(process.argv[i + 1]) : def
}

const NODES = arg('nodes', 200)
const K = arg('k', 20)
const CONCURRENCY = arg('concurrency', 16)
const ANSWER_K = arg('answer-k', 8)
const LOOKUPS = arg('lookups', 50)
const SEEDS = arg('seeds', 2)
const SEED = arg('seed', 1)

// Deterministic ids and targets: SHA-1 of (seed, purpose, index).
function idFor (purpose, i) {
  return crypto.createHash('sha1').update(`${SEED}/${purpose}/${i}`).digest()
}

function xorCompare (target) {
  return (a, b) => {
    for (let i = 0; i < target.length; i++) {
      const da = a[i] ^ target[i]
      const db = b[i] ^ target[i]
      if (da !== db) return da - db
    }
    return 0
  }
}

function median (v) {
  const s = v.slice().sort((a, b) => a - b)
  return s.length ? s[Math.ceil(s.length / 2) - 1] : 0
}

function quantile (v, p) {
  const s = v.slice().sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length, Math.max(1, Math.ceil(p * s.length))) - 1] : 0
}

function listen (rpc) {
  return new Promise((resolve) => rpc.bind(0, '127.0.0.1', resolve))
}

function populate (rpc) {
  return new Promise((resolve) => {
    rpc.populate(rpc.id, { q: 'find_node', a: { id: rpc.id, target: rpc.id } }, () => resolve())
  })
}

async function main () {
  const nodes = []
  const addresses = []
  for (let i = 0; i < NODES; i++) {
    const bootstrap = i < SEEDS ? [] : addresses.slice(0, SEEDS)
    const rpc = krpc({ id: idFor('node', i), k: K, concurrency: CONCURRENCY, bootstrap })
    rpc.on('query', (query, peer) => {
      const q = query.q.toString()
      if (q === 'find_node' && query.a && Buffer.isBuffer(query.a.target)) {
        rpc.response(peer, query, { id: rpc.id }, rpc.nodes.closest(query.a.target, ANSWER_K))
      } else if (q === 'ping') {
        rpc.response(peer, query, { id: rpc.id })
      } else {
        rpc.error(peer, query, [204, 'Method Unknown'])
      }
    })
    await listen(rpc)
    addresses.push('127.0.0.1:' + rpc.address().port)
    nodes.push(rpc)
  }
  // Seeds know each other: node 0 bootstraps from node 1, the others from the seeds.
  nodes[0].bootstrap = [{ host: '127.0.0.1', port: Number(addresses[1].split(':')[1]) }]
  for (const rpc of nodes) await populate(rpc)

  // Count the initiator's find_node queries for the current target.
  let counting = null
  for (const rpc of nodes) {
    const original = rpc.socket.query.bind(rpc.socket)
    rpc.socket.query = (peer, message, cb) => {
      if (counting && counting.rpc === rpc && message.q === 'find_node' && message.a &&
          Buffer.isBuffer(message.a.target) && message.a.target.equals(counting.target)) {
        counting.queries++
      }
      return original(peer, message, cb)
    }
  }

  const ids = nodes.map((n) => n.id)
  const out = { nodes: NODES, k: K, concurrency: CONCURRENCY, answer_k: ANSWER_K, lookups: [] }
  for (let l = 0; l < LOOKUPS; l++) {
    const target = idFor('target', l)
    const from = Number(idFor('from', l).readUInt32BE(0) % NODES)
    const rpc = nodes[from]
    const responders = new Set()
    counting = { rpc, target, queries: 0 }
    const t0 = process.hrtime.bigint()
    const replies = await new Promise((resolve) => {
      rpc.closest(target, { q: 'find_node', a: { target } }, (res) => {
        if (res && res.r && Buffer.isBuffer(res.r.id)) responders.add(res.r.id.toString('hex'))
        return true
      }, (err, n) => resolve(err ? -1 : n))
    })
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    const truth = ids.slice().sort(xorCompare(target))
    const recallOf = (n) => {
      const best = truth.slice(0, n)
      // The lookup's result: its n closest responders.
      const got = [...responders].map((h) => Buffer.from(h, 'hex')).sort(xorCompare(target)).slice(0, n)
      const gotHex = new Set(got.map((b) => b.toString('hex')))
      let found = 0
      for (const id of best) {
        if (id.equals(rpc.id) || gotHex.has(id.toString('hex'))) found++
      }
      return found / n
    }
    out.lookups.push({ queries: counting.queries, replies, recall: recallOf(K), recall8: recallOf(8), ms })
    counting = null
  }
  const q = out.lookups.map((x) => x.queries)
  out.queries_median = median(q)
  out.queries_p90 = quantile(q, 0.9)
  out.queries_mean = q.reduce((a, b) => a + b, 0) / q.length
  out.recall_mean = out.lookups.reduce((a, x) => a + x.recall, 0) / q.length
  out.recall8_mean = out.lookups.reduce((a, x) => a + x.recall8, 0) / q.length
  out.table_size_mean = nodes.reduce((a, n) => a + n.nodes.count(), 0) / NODES
  console.log(JSON.stringify(out))
  for (const rpc of nodes) rpc.destroy()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
