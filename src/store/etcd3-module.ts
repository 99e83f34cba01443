/**
 * The etcd3 client library, loaded on first use: with gRPC and protobufjs it
 * is about a sixth of a node's start-up, and a node on the embedded store, a
 * worker, or most commands never talk to etcd.
 */
import { createRequire } from 'node:module';

type Etcd3Module = typeof import('etcd3');

const require = createRequire(import.meta.url);
let loaded: Etcd3Module | undefined;

/** etcd3, loaded the first time it is asked for. */
export function etcd3(): Etcd3Module {
  loaded ??= require('etcd3') as Etcd3Module;
  return loaded;
}
