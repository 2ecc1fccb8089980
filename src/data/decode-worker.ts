import { parentPort } from 'node:worker_threads';
import { preprocessImage, type PreprocessSettings } from './preprocess.js';
import { InputError } from '../util/errors.js';
import type { DecodeReply, DecodeRequest } from './decode-pool.js';

// Preprocesses photos off the inference thread: decoding runs on sharp's threads either way, but the disc search and
// normalisation are JavaScript, and on the main thread they would stall the network between batches.
const port = parentPort!;
port.on('message', async (msg: DecodeRequest) => {
  const input = typeof msg.input === 'string' ? msg.input : Buffer.from(msg.input.buffer, msg.input.byteOffset, msg.input.byteLength);
  let reply: DecodeReply;
  try {
    const im = await preprocessImage(input, msg.settings as PreprocessSettings);
    reply = { id: msg.id, ok: true, data: im.data, size: im.size, channels: im.channels, geometry: im.geometry };
    port.postMessage(reply, [im.data.buffer as ArrayBuffer]);
    return;
  } catch (err) {
    reply = { id: msg.id, ok: false, inputError: err instanceof InputError, message: (err as Error).message };
  }
  port.postMessage(reply);
});
