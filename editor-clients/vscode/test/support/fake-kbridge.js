/**
 * Writes a stand-in `kbridge` executable for tests: a shell script that answers exactly
 * `kbridge targets --output json` (with or without `--all-namespaces`) with the given JSON
 * and fails loudly on anything else,
 * so a test also proves which command the extension runs.
 */
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function fakeKbridge(targetsJson, { exitCode = 0, stderr = '' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbridge-fake-'));
  const file = path.join(dir, 'kbridge');
  const quote = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
  fs.writeFileSync(
    file,
    [
      '#!/bin/sh',
      'if [ "$*" != "targets --output json" ] && [ "$*" != "targets --output json --all-namespaces" ]; then',
      '  echo "fake kbridge: unexpected arguments: $*" >&2; exit 64',
      'fi',
      `printf '%s\\n' ${quote(targetsJson)}`,
      stderr ? `printf '%s\\n' ${quote(stderr)} >&2` : ':',
      `exit ${exitCode}`,
      '',
    ].join('\n'),
    { mode: 0o755 }
  );
  return { dir, file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

module.exports = { fakeKbridge };
