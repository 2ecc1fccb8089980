import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';

/** How long an upload to a slot-holding route may take. Both in milliseconds. */
export interface UploadTimeouts {
  /** From the request headers to the last byte of the body. */
  total: number;
  /** The longest pause between two arrivals of body bytes. */
  idle: number;
}

export interface SlotCounts {
  max: number;
  inUse: number;
  free: number;
}

/**
 * Calls `onTimeout` (once) when the body of `req` has not arrived whole within `limits.total` of now, or when no body
 * bytes arrived for `limits.idle`. Returns a function that stops watching. Progress is read from the socket's byte
 * count, which the HTTP parser keeps up to date without anybody listening to 'data'.
 */
export function watchUpload(req: FastifyRequest, limits: UploadTimeouts, onTimeout: (message: string) => void): () => void {
  const raw = req.raw;
  const socket: Socket | null = raw.socket ?? null;
  if (raw.complete || !socket || socket.destroyed) return () => {};
  const started = Date.now();
  let lastBytes = socket.bytesRead;
  let lastProgress = started;
  const tick = Math.max(25, Math.min(250, Math.floor(Math.min(limits.total, limits.idle) / 4)));
  const timer = setInterval(() => {
    if (raw.complete || socket.destroyed) return clearInterval(timer);
    const now = Date.now();
    if (socket.bytesRead !== lastBytes) {
      lastBytes = socket.bytesRead;
      lastProgress = now;
    }
    if (now - started >= limits.total) {
      clearInterval(timer);
      onTimeout(`the upload took longer than ${limits.total} ms; send the photograph faster or raise --upload-timeout`);
    } else if (now - lastProgress >= limits.idle) {
      clearInterval(timer);
      onTimeout(`the upload stalled for ${limits.idle} ms; send the photograph without pauses or raise --upload-idle-timeout`);
    }
  }, tick);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Closes the connection of a request that was answered before its body was read (401, 503) if the rest of the body
 * is slow to come. A client that sends its body at a normal pace gets the answer on a connection that stays usable
 * (Node reads and drops the body); a slow one cannot keep the socket for the length of the request timeout.
 */
export function dropSlowUpload(req: FastifyRequest, limits: UploadTimeouts): void {
  watchUpload(req, limits, () => req.raw.socket?.destroy());
}

/**
 * One admitted request's hold on a slot. The slot bounds the work in progress (decoding, inference, heatmaps) and
 * the uploads buffered for it, so it is given back once the handler's work is over *and* the request has ended one
 * way or another:
 * - the whole response was handed to the connection ('prefinish', or 'finish'); a client that reads slowly then
 *   holds a socket buffer, not a slot;
 * - the connection is gone (client reset or closed it, a timeout destroyed it): the response's or the socket's
 *   'close'. Fastify's own hooks miss this case when the body had arrived whole: onRequestAbort only fires for an
 *   incomplete body, and onResponse only on 'finish'/'error', which a response written to a dead socket never emits;
 * - the upload was too slow (see UploadTimeouts): the server answers 408 and closes the connection.
 * When the connection goes away while the handler works, `signal` aborts so that queued work can be skipped, and the
 * slot comes back when the handler returns.
 */
class Ticket {
  private released = false;
  private ended = false;
  private working = false;
  readonly controller = new AbortController();
  private readonly socket: Socket | null;

  constructor(
    private readonly req: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly onRelease: () => void,
  ) {
    this.socket = req.raw.socket ?? null;
    const res = reply.raw;
    res.once('prefinish', this.onEnded);
    res.once('finish', this.onEnded);
    res.once('close', this.onClosed);
    // A pipelined request's response is not attached to the socket yet, and gets no 'close' of its own.
    this.socket?.once('close', this.onClosed);
    if (this.socket?.destroyed) this.onClosed();
  }

  private readonly onEnded = () => {
    this.ended = true;
    if (!this.working) this.release();
  };

  private readonly onClosed = () => {
    const raw = this.req.raw;
    const answered = this.reply.raw.writableFinished;
    if (!answered) this.controller.abort(new Error('the client closed the connection'));
    // A body still being read (a multipart form is read by the handler itself) can never arrive once the connection
    // is gone: end the request stream so that its readers fail instead of waiting forever with the slot. Node does
    // this itself only for a request whose response is not finished yet, and a 408 is.
    if (!raw.destroyed && (!answered || (this.socket?.destroyed && !raw.complete))) raw.destroy();
    this.onEnded();
  };

  /** True once the client can no longer receive the answer. */
  get gone(): boolean {
    return this.controller.signal.aborted || !!this.socket?.destroyed;
  }

  startWork(): void {
    this.working = true;
  }

  endWork(): void {
    this.working = false;
    if (this.ended || this.gone) this.onEnded();
  }

  /** Cuts off an upload that takes longer than `limits` (408, then the connection is closed). */
  watchUpload(limits: UploadTimeouts): void {
    this.stopWatch = watchUpload(this.req, limits, (message) => this.timeOut(message));
  }

  private stopWatch: () => void = () => {};

  private timeOut(message: string): void {
    const res = this.reply.raw;
    const socket = this.socket;
    if (!res.headersSent && !res.writableEnded && !socket?.destroyed) {
      // Fastify is still reading the body: take the reply over so that it neither runs the handler nor answers twice.
      this.reply.hijack();
      const body = JSON.stringify({ statusCode: 408, error: 'Request Timeout', message });
      res.writeHead(408, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'x-content-type-options': 'nosniff',
        connection: 'close',
      });
      res.end(body);
    }
    this.controller.abort(new Error(message));
    // 'connection: close' ends the socket once the answer is out (then onClosed); a client that does not read it is
    // cut off anyway.
    setTimeout(() => {
      socket?.destroy();
      this.onClosed();
    }, 1000).unref();
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.stopWatch();
    const res = this.reply.raw;
    res.off('prefinish', this.onEnded);
    res.off('finish', this.onEnded);
    res.off('close', this.onClosed);
    this.socket?.off('close', this.onClosed);
    this.onRelease();
  }
}

/** A fixed number of slots for the predict/explain routes, given back on every path a request can end by. */
export class SlotGate {
  private used = 0;
  private readonly tickets = new WeakMap<FastifyRequest, Ticket>();

  constructor(
    readonly max: number,
    private readonly uploads: UploadTimeouts,
  ) {}

  counts(): SlotCounts {
    return { max: this.max, inUse: this.used, free: this.max - this.used };
  }

  /** Takes a slot for `req` (an onRequest hook's work); false when none is free. */
  admit(req: FastifyRequest, reply: FastifyReply): boolean {
    if (this.used >= this.max) return false;
    this.used++;
    const ticket = new Ticket(req, reply, () => {
      this.used--;
      this.tickets.delete(req);
    });
    this.tickets.set(req, ticket);
    ticket.watchUpload(this.uploads);
    return true;
  }

  /** Aborts when the client of `req` is gone (so that work not yet started can be skipped). */
  signal(req: FastifyRequest): AbortSignal | undefined {
    return this.tickets.get(req)?.controller.signal;
  }

  /** Wraps a route handler: its slot is held until the handler has returned, even when the client left earlier. */
  guard<R>(handler: (req: FastifyRequest, reply: FastifyReply) => Promise<R>): (req: FastifyRequest, reply: FastifyReply) => Promise<R> {
    return async (req, reply) => {
      const ticket = this.tickets.get(req);
      ticket?.startWork();
      try {
        return await handler(req, reply);
      } finally {
        ticket?.endWork();
      }
    };
  }
}
