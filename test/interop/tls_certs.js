// test/interop/tls_certs.js - a throwaway test CA and server certificates
// (for 127.0.0.1 and localhost), made with the `openssl` command-line tool
// in a fresh temporary directory. Not a test itself.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// Returns { dir, ca, caPem, issue(name) -> { cert, key, pem, fingerprint,
// spki } } where files are absolute paths; issue() makes a new key and a
// certificate signed by the CA, with CN `name`.
function makeCA() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bx-tls-'));
  openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=bayeux test CA', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  fs.writeFileSync(path.join(dir, 'san.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  let serial = 1;
  const ca = path.join(dir, 'ca.crt');
  return {
    dir,
    ca,
    caPem: fs.readFileSync(ca),
    issue(name) {
      openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
      openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key',
        '-set_serial', String(serial++), '-days', '2', '-extfile', 'san.ext', '-out', `${name}.crt`]);
      const pem = fs.readFileSync(path.join(dir, `${name}.crt`));
      const x = new crypto.X509Certificate(pem);
      // base64 SHA-256 of the SubjectPublicKeyInfo: what Chromium's
      // --ignore-certificate-errors-spki-list pins
      const spki = crypto.createHash('sha256')
        .update(x.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
      return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`), pem,
        fingerprint: x.fingerprint256, spki };
    },
    remove() { fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

module.exports = { makeCA };
