'use strict';
// Drives the pure-JavaScript client ali-ons@3.12.0 for the interop tests. Runs with node from
// the interop cache folder's node_modules (NODE_PATH), never from the repository.
//
//   node ali_ons_driver.js produce --namesrv HOST:PORT --group G --spec FILE
//   node ali_ons_driver.js consume --namesrv HOST:PORT --group G --topic T --expression E
//                                  --props a,b [--lifetime-s S]
//
// Every line on stdout is one JSON object with an `event`, as rocketmq_driver.py prints them:
//   produce: {"event": "sent", index, status, msg_id, offset} per message, then "done".
//   consume: "started" once subscribed, {"event": "msg", ...} per delivery (body as base64),
//            {"event": "queues", queues: [ids]} whenever its assignment changes, "stopped"
//            after close() (which persists the consumed offsets to the broker).
// The consumer closes when stdin says `stop` or closes, or after --lifetime-s as a last resort.
// The client's own logging goes to stderr.

const fs = require('fs');
const readline = require('readline');
const { Producer, Consumer, Message } = require('ali-ons');

function parseArgs(argv) {
  const args = { mode: argv[0], expression: '*', props: '', lifetimeS: 120 };
  for (let i = 1; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_m, c) => c.toUpperCase());
    args[key] = argv[i + 1];
  }
  args.lifetimeS = Number(args.lifetimeS);
  return args;
}

function emit(fields) {
  const sorted = {};
  for (const key of Object.keys(fields).sort()) sorted[key] = fields[key];
  process.stdout.write(JSON.stringify(sorted) + '\n'); // synchronous for pipes on Linux
}

const logger = {
  info() {},
  debug() {},
  warn(...args) { console.error('[warn]', ...args); },
  error(...args) { console.error('[error]', ...args); },
};

// ali-ons looks name servers up over HTTP unless nameSrv is given; make sure it never does.
const httpclient = {
  async request(url) {
    throw new Error(`interop tests never look up name servers over HTTP (asked for ${url})`);
  },
};

function common(args) {
  return { nameSrv: args.namesrv, httpclient, logger, accessKeyId: '', accessKeySecret: '' };
}

async function produce(args) {
  const spec = JSON.parse(fs.readFileSync(args.spec, 'utf8'));
  const producer = new Producer({ ...common(args), producerGroup: args.group });
  await producer.ready();
  for (let index = 0; index < spec.length; index++) {
    const item = spec[index];
    const msg = new Message(item.topic, item.tags, Buffer.from(item.body_b64, 'base64'));
    if (item.keys && item.keys.length) msg.keys = item.keys;
    for (const [key, value] of Object.entries(item.props || {})) msg.properties[key] = value;
    const result = await producer.send(msg);
    emit({ event: 'sent', index, status: result.sendStatus, msg_id: result.msgId,
      offset: result.queueOffset });
  }
  await producer.close();
  emit({ event: 'done' });
}

async function consume(args) {
  const propNames = args.props.split(',').filter(p => p);
  const consumer = new Consumer({ ...common(args), consumerGroup: args.group });
  consumer.on('error', err => console.error('[consumer error]', err && err.stack || err));
  consumer.subscribe(args.topic, args.expression, async msg => {
    const props = {};
    for (const name of propNames) props[name] = msg.properties[name] === undefined ? null : msg.properties[name];
    emit({ event: 'msg', msg_id: msg.msgId, topic: msg.topic, tags: msg.tags || null, keys: msg.keys || null,
      body_b64: (msg.body || Buffer.alloc(0)).toString('base64'), props,
      queue_id: msg.queueId, queue_offset: Number(msg.queueOffset), reconsume_times: msg.reconsumeTimes });
  });
  await consumer.ready();
  emit({ event: 'started' });

  // ali-ons ignores NOTIFY_CONSUMER_IDS_CHANGED and rebalances on a 10 s timer: report the queues
  // it holds so a test can tell when a group has settled.
  let lastQueues = '';
  const queueWatch = setInterval(() => {
    const ids = [];
    for (const item of consumer.processQueueTable.values()) {
      if (item && item.messageQueue.topic === args.topic) ids.push(Number(item.messageQueue.queueId));
    }
    ids.sort((a, b) => a - b);
    if (ids.join(',') !== lastQueues) {
      lastQueues = ids.join(',');
      emit({ event: 'queues', queues: ids });
    }
  }, 100);

  await new Promise(resolve => {
    const timer = setTimeout(() => { emit({ event: 'lifetime_exceeded' }); resolve(); }, args.lifetimeS * 1000);
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', line => { if (line.trim() === 'stop') { clearTimeout(timer); resolve(); } });
    rl.on('close', () => { clearTimeout(timer); resolve(); });
  });
  clearInterval(queueWatch);
  await consumer.close(); // persists the consumed offsets, unregisters
  emit({ event: 'stopped' });
}

const args = parseArgs(process.argv.slice(2));
const run = args.mode === 'produce' ? produce : consume;
run(args).then(
  () => process.exit(0), // the client keeps timers (and its inner producer) alive: leave now
  err => { console.error('[fatal]', err && err.stack || err); process.exit(1); },
);
