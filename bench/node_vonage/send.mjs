// Bulk SMS through the Vonage Messages API as Vonage's Node.js tutorials do it:
// @vonage/server-sdk with an application id and private key, and a p-queue that
// keeps 50 sends in flight. Written for bench/vendor_send.py, which points it at
// bench/standin.py (VONAGE_API_HOST, and NODE_EXTRA_CA_CERTS for the stand-in's CA).
//
//   node send.mjs --count 2000 [--concurrency 50]
//
// Environment: VONAGE_APPLICATION_ID, VONAGE_PRIVATE_KEY_PATH, VONAGE_NUMBER and
// VONAGE_API_HOST (default https://api.nexmo.com). Prints one JSON line.
import { parseArgs } from 'node:util';
import { Vonage } from '@vonage/server-sdk';
import PQueue from 'p-queue';

const { values: options } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '50' },
    text: { type: 'string', default: 'Hi there, 20% off this weekend. Reply STOP to opt out.' },
  },
});
const count = Number(options.count);
const concurrency = Number(options.concurrency);

const vonage = new Vonage(
  {
    applicationId: process.env.VONAGE_APPLICATION_ID,
    // A path, as in the tutorials; the SDK reads the file.
    privateKey: process.env.VONAGE_PRIVATE_KEY_PATH,
  },
  { apiHost: process.env.VONAGE_API_HOST || 'https://api.nexmo.com' },
);
const from = process.env.VONAGE_NUMBER || '15550100001';

const queue = new PQueue({ concurrency });
const errors = {};
let sent = 0;
let failed = 0;

// Distinct US numbers, one per message: 1 415 000 0000, 1 415 000 0001, ...
const recipient = (index) => `1415${String(index).padStart(7, '0')}`;

const started = performance.now();
for (let index = 0; index < count; index += 1) {
  queue.add(async () => {
    try {
      await vonage.messages.send({
        messageType: 'text',
        channel: 'sms',
        to: recipient(index),
        from,
        text: options.text,
        clientRef: `node-${index}`,
      });
      sent += 1;
    } catch (error) {
      failed += 1;
      const key = error?.response?.status ?? error?.code ?? error?.name ?? 'error';
      errors[key] = (errors[key] || 0) + 1;
    }
  });
}
await queue.onIdle();
const seconds = (performance.now() - started) / 1000;

console.log(JSON.stringify({
  sent,
  failed,
  errors,
  seconds: Number(seconds.toFixed(3)),
  per_second: Number((sent / seconds).toFixed(1)),
  concurrency,
}));
