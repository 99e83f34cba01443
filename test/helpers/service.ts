/** A founded cluster service on a real LevelDB in a scratch dir, with a fake clock. */
import { X509Certificate } from 'node:crypto';
import { FakeClock } from '../../src/core/clock.js';
import { recordingLogger } from '../../src/core/logger.js';
import { systemRandom } from '../../src/core/random.js';
import { ClusterService } from '../../src/manager/cluster-service.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { LevelClusterStore } from '../../src/store/cluster-store.js';
import type { ExternalCaRecord } from '../../src/store/records.js';
import { scratchDir } from './openssl.js';

export const HOUR = 3_600_000;

/** A fresh CSR and the key behind it. */
export function freshCsr(): { csr: string; keyPem: string } {
  const key = generateNodeKeySync();
  return { csr: createCsr({ privateKey: key.privateKey }), keyPem: key.privateKeyPem };
}

/** Founds a cluster and returns its service, store, clock and the first manager's certificate. */
export async function foundTestCluster(options: { certExpiryMs?: number; root?: { certPem: string }; externalCAs?: ExternalCaRecord[] } = {}) {
  const scratch = scratchDir('muster-svc-');
  const store = new LevelClusterStore(scratch.path('db'));
  await store.open();
  const clock = new FakeClock(Date.now());
  const logger = recordingLogger();
  const managerKey = freshCsr();
  const { service, nodeId, certificate } = await ClusterService.found({
    store,
    clock,
    random: systemRandom,
    logger,
    advertiseAddr: '127.0.0.1:4377',
    advertiseHost: '127.0.0.1',
    certExpiryMs: options.certExpiryMs ?? 90 * 24 * HOUR,
    csrPem: managerKey.csr,
    hostname: 'manager-1',
    ...(options.root === undefined ? {} : { root: options.root }),
    ...(options.externalCAs === undefined ? {} : { externalCAs: options.externalCAs }),
  });
  return {
    service,
    store,
    clock,
    logger,
    managerId: nodeId,
    managerCert: new X509Certificate(certificate.certPem),
    /** The first manager's TLS identity, for serving the app. */
    managerTls: { keyPem: managerKey.keyPem, certPem: certificate.certPem, rootPem: service.rootPem },
    async cleanup() {
      await store.close();
      scratch.cleanup();
    },
  };
}
