/**
 * Who may open a managed store: etcd's own users and roles, keyed on the
 * serving managers' certificates (DESIGN §10). With client-certificate
 * authentication on, etcd takes a request's user name from the CN of the
 * client certificate; once auth is enabled, only a CN that is an etcd user
 * gets anywhere. Each serving manager is a user named by its node ID with
 * etcd's root role (it also adds and removes members and users); a worker,
 * an API user, or a manager that was demoted or removed has no user, and
 * etcd refuses it. Nothing here is a password: etcd's required `root` user
 * gets a random one that is never kept, and manager users have none.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { ID_PATTERN } from '../core/ids.js';

/** etcd's built-in role that may do everything, users and members included. */
const ROOT_ROLE = 'root';
/** etcd's user that must exist (with the root role) before auth can be enabled. */
const ROOT_USER = 'root';

/** Names that no API user may take, because etcd would read them as a store user. */
export function isStoreUserName(name: string): boolean {
  return name === ROOT_USER || ID_PATTERN.test(name);
}

/** True when etcd says the thing exists already (a repeat of a step that was done). */
function alreadyThere(error: unknown): boolean {
  return error instanceof Error && /already exists|already enabled/.test(error.message);
}

/** True when etcd says the thing is not there (a repeat of a removal). */
function notThere(error: unknown): boolean {
  return error instanceof Error && /not found/.test(error.message);
}

async function tolerate(step: Promise<unknown>, ok: (error: unknown) => boolean): Promise<void> {
  try {
    await step;
  } catch (error) {
    if (!ok(error)) throw error;
  }
}

/**
 * Turns access control on for a new managed store, with `managerId` (the
 * founding manager, whose certificate the client presents) as its first
 * user. Idempotent: a founding that stopped halfway can run it again.
 */
export async function enableManagerAccess(client: Etcd3, managerId: string): Promise<void> {
  // root's password is random and dropped: no one logs in with a password, certificates decide.
  await tolerate(client.auth.userAdd({ name: ROOT_USER, password: randomBytes(32).toString('base64url') }), alreadyThere);
  await tolerate(client.auth.userGrantRole({ user: ROOT_USER, role: ROOT_ROLE }), alreadyThere);
  await grantManagerAccess(client, managerId);
  await tolerate(client.auth.authEnable(), alreadyThere);
}

/** Lets the manager `managerId` open the store with its certificate. Idempotent. */
export async function grantManagerAccess(client: Etcd3, managerId: string): Promise<void> {
  await tolerate(client.auth.userAdd({ name: managerId, options: { no_password: true } }), alreadyThere);
  await client.auth.userGrantRole({ user: managerId, role: ROOT_ROLE });
}

/** Takes the store away from `managerId` (demoted, removed or left): its certificate opens nothing from now on. Idempotent. */
export async function revokeManagerAccess(client: Etcd3, managerId: string): Promise<void> {
  await tolerate(client.auth.userDelete({ name: managerId }), notThere);
}

/** The managers that may open the store now. */
export async function managersWithAccess(client: Etcd3): Promise<string[]> {
  const { users } = await client.auth.userList();
  return users.filter((name) => name !== ROOT_USER).sort();
}
