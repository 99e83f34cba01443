/** The CLI's side of the running node's agent socket (<data-dir>/agent.sock): `muster cert` and `muster status` ask it. */
import { MusterError, isErrorCode } from '../core/errors.js';
import { createDispatcher, send, TransportError } from '../api/transport.js';
import type { AgentAnswer } from '../agent/agent-socket.js';

/** Calls the running node's agent socket; NODE_NOT_RUNNING when nothing answers there. */
export async function callAgent(socketPath: string, method: 'GET' | 'POST' | 'DELETE', path: string, body: unknown, timeoutMs: number): Promise<AgentAnswer> {
  const dispatcher = createDispatcher({ tls: {}, socketPath });
  try {
    const response = await send({ dispatcher, url: `http://localhost${path}`, method, body, timeoutMs });
    let parsed: AgentAnswer & { code?: unknown; message?: unknown; hint?: unknown };
    try {
      parsed = JSON.parse(response.body.toString('utf8')) as typeof parsed;
    } catch {
      throw new MusterError('INTERNAL', `the node answered HTTP ${response.status} without JSON`);
    }
    if (response.status >= 200 && response.status < 300) return parsed;
    const hint = typeof parsed.hint === 'string' ? parsed.hint : undefined;
    throw new MusterError(
      isErrorCode(parsed.code) ? parsed.code : 'INTERNAL',
      typeof parsed.message === 'string' ? parsed.message : `HTTP ${response.status}`,
      hint === undefined ? {} : { hint },
    );
  } catch (error) {
    if (error instanceof TransportError && error.failure !== 'timeout') {
      throw new MusterError('NODE_NOT_RUNNING', `no muster node process answers on ${socketPath}`, {
        hint: "start this node ('muster run --data-dir DIR', or its systemd unit): the running node makes and renews service certificates",
      });
    }
    throw error;
  } finally {
    await dispatcher.close();
  }
}
