// Command-line options for the compatibility scripts: `--name value`, `--name=value`, or an
// environment variable, in that order, else a fallback.

'use strict';

function option(name, envName, fallback) {
  const flag = `--${name}`;
  const index = process.argv.indexOf(flag);
  if (index !== -1 && index + 1 < process.argv.length) {
    return process.argv[index + 1];
  }
  const prefixed = process.argv.find((arg) => arg.startsWith(`${flag}=`));
  if (prefixed) {
    return prefixed.slice(flag.length + 1);
  }
  const env = process.env[envName];
  return env != null && env !== '' ? env : fallback;
}

module.exports = { option };
