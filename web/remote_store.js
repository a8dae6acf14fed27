// What this browser keeps of its pairing with the camera, in IndexedDB: the camera's
// id and public key (raw bytes), this device's id, its key pair and the rendezvous to
// signal through. The private key is a non-extractable CryptoKey: IndexedDB stores
// the key object itself, which a script can use but never read out.
//
//   { cameraId, cameraKey: Uint8Array, deviceId, deviceKeyPair: CryptoKeyPair,
//     rendezvous: { url, username, password, topic_prefix }, name, pairedAt }
//
// One pairing: pairing again (with this camera or another) replaces it.

const DB_NAME = 'peercam-remote';
const STORE = 'pairing';
const KEY = 'current';

function opened() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error('the pairing store is held by another tab'));
  });
}

async function transaction(mode, work) {
  const db = await opened();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = work(tx.objectStore(STORE));
      // Resolved once committed, so a saved pairing survives the page closing at once.
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('aborted'));
    });
  } finally {
    db.close();
  }
}

// The saved pairing, or null.
export async function loadPairing() {
  return (await transaction('readonly', (store) => store.get(KEY))) ?? null;
}

export async function savePairing(pairing) {
  const { cameraId, cameraKey, deviceId, deviceKeyPair, rendezvous } = pairing;
  if (!cameraId || !(cameraKey instanceof Uint8Array) || !deviceId || !deviceKeyPair?.privateKey) {
    throw new TypeError('a pairing needs cameraId, cameraKey (bytes), deviceId and deviceKeyPair');
  }
  await transaction('readwrite', (store) => store.put({ ...pairing, rendezvous: rendezvous ?? null }, KEY));
}

export async function forgetPairing() {
  await transaction('readwrite', (store) => store.delete(KEY));
}
