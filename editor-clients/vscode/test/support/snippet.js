/**
 * Turns a `configurationSnippets` body into the configuration VS Code launches, in the two
 * steps VS Code takes, so tests can use the snippets verbatim:
 * 1. inserting the snippet into launch.json: the body is written out as JSON text, strings
 *    starting with `^` raw (VS Code's JSON language service does this), and the text is then
 *    expanded as a snippet with every placeholder left at its default (the user pressing Tab)
 *    or replaced by what the user typed there;
 * 2. launching: `${workspaceFolder}`-style variables are substituted.
 * Both are strict: an unescaped `${workspaceFolder}` in a snippet (which VS Code's snippet
 * engine would eat) or a variable we do not know fails the test instead of passing silently.
 */
'use strict';

function stringifyBody(value) {
  if (typeof value === 'string') return value.startsWith('^') ? value.slice(1) : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stringifyBody).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${stringifyBody(v)}`).join(', ')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Expands TextMate/VS Code snippet syntax: `${1:x}` → x, `$1`/`${1}` → '', `\$` → $.
 * `typed` plays the user at tab stops: {2: 'todo'} replaces tab stop 2 everywhere it appears.
 */
function expandSnippetText(text, typed = {}) {
  let out = '';
  for (let i = 0; i < text.length; ) {
    const ch = text[i];
    if (ch === '\\' && (text[i + 1] === '$' || text[i + 1] === '\\' || text[i + 1] === '}')) {
      out += text[i + 1];
      i += 2;
    } else if (ch === '$') {
      const m = /^\$(?:(\d+)|\{(\d+)\}|\{(\d+):([^}]*)\})/.exec(text.slice(i));
      if (!m) throw new Error(`snippet has an unescaped $ that VS Code would treat as a variable: ${text.slice(i, i + 30)}`);
      const stop = m[1] ?? m[2] ?? m[3];
      out += stop in typed ? typed[stop] : (m[4] ?? '');
      i += m[0].length;
    } else {
      out += ch;
      i += 1;
    }
  }
  return out;
}

/** The configuration a snippet leaves in launch.json: defaults, or what the user typed. */
function expandSnippet(body, typed = {}) {
  return JSON.parse(expandSnippetText(stringifyBody(body), typed));
}

/** Substitutes VS Code's launch-time variables in every string of a configuration. */
function resolveVariables(config, vars) {
  const resolve = (value) => {
    if (typeof value === 'string') {
      return value.replace(/\$\{([^}]+)\}/g, (whole, name) => {
        if (name.startsWith('env:')) return process.env[name.slice(4)] ?? '';
        if (!(name in vars)) throw new Error(`unknown variable ${whole} in ${JSON.stringify(value)}`);
        return vars[name];
      });
    }
    if (Array.isArray(value)) return value.map(resolve);
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolve(v)]));
    }
    return value;
  };
  return resolve(config);
}

module.exports = { expandSnippet, expandSnippetText, resolveVariables };
