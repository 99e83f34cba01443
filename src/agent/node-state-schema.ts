/**
 * node.json's shape as a TypeBox schema: the source of the plain schema
 * node-state.ts checks node.json with (node-state-plain.ts, written by
 * `npm run schemas:plain`), kept out of node-state.ts so that reading
 * node.json never loads TypeBox.
 */
import Type from 'typebox';
import { NODE_STATE_SCHEMA } from './node-state.js';

/** The contents of node.json. */
export const NodeState = Type.Object({
  schema: Type.Literal(NODE_STATE_SCHEMA),
  clusterId: Type.String({ pattern: '^[0-9a-z]{25}$' }),
  nodeId: Type.String({ pattern: '^[0-9a-z]{25}$' }),
  role: Type.Union([Type.Literal('worker'), Type.Literal('manager')]),
  /** Manager addresses (host:port) this node talks to, as the managers last told it. */
  managers: Type.Array(Type.String(), { minItems: 1 }),
  /** Where this node listens and what it advertises when it serves as a manager. */
  listenAddr: Type.Optional(Type.String()),
  advertiseAddr: Type.Optional(Type.String()),
  /** The address this node's manager serves on now (the advertise address, port 0 resolved); absent when it does not serve. */
  servingAddr: Type.Optional(Type.String()),
  /**
   * Where this node's etcd member runs should it serve a managed store (its
   * join's --etcd-* flags, else etcd's ports on its advertise host): sent
   * with each renewal, so a promotion adds its member there.
   */
  storeMember: Type.Optional(Type.Object({ clientAddr: Type.String(), peerAddr: Type.String(), binary: Type.Optional(Type.String()) })),
});
export type NodeState = Type.Static<typeof NodeState>;
