/** The Swarm-shaped lines that tell an operator how to add nodes (DESIGN §5). */

/** "To add a worker to this cluster, run the following command: …" */
export function joinInstructions(role: 'worker' | 'manager', token: string, address: string): string {
  return `To add a ${role} to this cluster, run the following command:\n\n    muster join --token ${token} ${address}\n\n`;
}

/** What init (or a restart of a manager) prints once it serves. */
export function managerBanner(params: { banner: string; nodeId: string; workerToken: string; address: string }): string {
  return (
    `${params.banner} (${params.nodeId}) is now a manager.\n\n` +
    joinInstructions('worker', params.workerToken, params.address) +
    `To add a manager to this cluster, run 'muster join-token manager' and follow the instructions.\n`
  );
}

/** Docker's words for an unlock key (swarm init --autolock, update --autolock=true, unlock-key). */
export function unlockKeyInstructions(unlockKey: string): string {
  return (
    'To unlock a manager after it restarts, run the `muster unlock`\n' +
    'command and provide the following key:\n\n' +
    `    ${unlockKey}\n\n` +
    'Please remember to store this key in a password manager, since without it you\n' +
    'will not be able to restart the manager.\n'
  );
}
