/**
 * Node roles and the certificate OUs that carry them. The OU is the identity
 * the API authorises on, so this mapping is the one place it is spelt.
 */

/** The role a node holds in the cluster. */
export type NodeRole = 'worker' | 'manager';

/** The roles a certificate can name: node roles, API users, and a node's service certificates (dockerd, nginx: never an identity on muster's API). */
export type CertRole = NodeRole | 'admin' | 'service';

/** OU for each certificate role. */
export const ROLE_OU: Readonly<Record<CertRole, string>> = {
  manager: 'swarm-manager',
  worker: 'swarm-worker',
  admin: 'swarm-admin',
  service: 'muster-service',
};

/** The role an OU names, or undefined for an OU muster never issues. */
export function roleFromOu(ou: string | undefined): CertRole | undefined {
  for (const [role, name] of Object.entries(ROLE_OU) as [CertRole, string][]) {
    if (name === ou) return role;
  }
  return undefined;
}

/** True for the two node roles. */
export function isNodeRole(value: unknown): value is NodeRole {
  return value === 'worker' || value === 'manager';
}
