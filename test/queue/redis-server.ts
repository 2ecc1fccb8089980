/**
 * A real Redis for the queue tests: Debian's redis-server (scripts/setup.sh installs it), on loopback at a free port,
 * with its files in a temporary folder that stop() removes. Persistence is on (append-only file, as docs/queue.md
 * recommends), so that restart() brings the data back as a production restart would.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../helpers.js';

export const REDIS_SERVER = 'redis-server';

/** Whether redis-server is installed (scripts/setup.sh installs it; the queue tests need it). */
export function redisServerAvailable(): boolean {
  return spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' }).status === 0;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

export interface RedisServerOptions {
  password?: string;
  /** Serve TLS only, with these PEM files (the plain port is closed). */
  tls?: { cert: string; key: string; ca: string };
}

export class RedisServer {
  private proc?: ChildProcess;
  private log = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly opts: RedisServerOptions,
  ) {}

  static async start(opts: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), await tempDir('fundus-redis-'), opts);
    await server.launch();
    return server;
  }

  /** The URL to reach it, with the password when it has one. */
  get url(): string {
    const auth = this.opts.password ? `:${encodeURIComponent(this.opts.password)}@` : '';
    return `${this.opts.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const args = ['--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'];
    if (this.opts.tls) {
      args.push('--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.opts.tls.cert, '--tls-key-file', this.opts.tls.key, '--tls-ca-cert-file', this.opts.tls.ca, '--tls-auth-clients', 'no');
    } else args.push('--port', String(this.port));
    if (this.opts.password) args.push('--requirepass', this.opts.password);
    const proc = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.log = '';
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        this.log += d.toString();
        if (/Ready to accept connections/.test(this.log)) resolve();
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}) while starting:\n${this.log}`)));
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis-server did not start in 15 s:\n${this.log}`)), 15_000);
    });
    try {
      await Promise.race([ready, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops it as a service manager would (SIGTERM: it writes its data and exits) and starts it again on the same port and files. */
  async restart(downMs = 0): Promise<void> {
    await this.halt();
    if (downMs > 0) await sleep(downMs);
    await this.launch();
  }

  private async halt(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    proc.kill('SIGTERM');
    await once(proc, 'exit');
  }

  async stop(): Promise<void> {
    await this.halt();
    await rm(this.dir, { recursive: true, force: true });
  }
}
