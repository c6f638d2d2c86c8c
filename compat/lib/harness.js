// A tiny test runner for the compatibility suite: named async tests with a timeout, cleanup
// hooks, skips, bounded concurrency, results printed in declaration order and a process exit
// code (0 when nothing failed) that the Rust integration test checks.

'use strict';

class SkipError extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'SkipError';
  }
}

// What a test function receives.
class TestContext {
  constructor(name) {
    this.name = name;
    this.notes = [];
    this._cleanups = [];
  }

  // Runs `fn` after the test, whatever its outcome (last registered, first run).
  defer(fn) {
    this._cleanups.push(fn);
  }

  // Adds a line to the test's report (shown for passing tests too).
  note(message) {
    this.notes.push(message);
  }

  // Ends the test as skipped.
  skip(reason) {
    throw new SkipError(reason);
  }

  async _cleanup() {
    const errors = [];
    while (this._cleanups.length > 0) {
      const fn = this._cleanups.pop();
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describeError(err) {
  if (err instanceof Error) {
    const extra = Object.keys(err)
      .filter((key) => key !== 'name' && key !== 'message')
      .map((key) => `${key}=${JSON.stringify(err[key])}`);
    const head = `${err.name}: ${err.message}${extra.length ? ` {${extra.join(', ')}}` : ''}`;
    // Only the call sites: an AssertionError's stack repeats its (multi-line) message.
    const stack = (err.stack || '')
      .split('\n')
      .filter((line) => /^\s+at /.test(line))
      .slice(0, 3)
      .join('\n');
    return stack ? `${head}\n${stack}` : head;
  }
  return JSON.stringify(err);
}

class Suite {
  constructor({ jobs = 4, filter = null, defaultTimeout = 10000 } = {}) {
    this.jobs = Math.max(1, jobs);
    this.filter = filter;
    this.defaultTimeout = defaultTimeout;
    this.tests = [];
  }

  // Registers a test. `options.timeout` overrides the default; `options.skip` is a reason
  // string to skip it without running.
  test(name, fn, options = {}) {
    if (this.tests.some((t) => t.name === name)) {
      throw new Error(`duplicate test name: ${name}`);
    }
    this.tests.push({ name, fn, options });
  }

  async _runOne(entry) {
    const started = Date.now();
    if (entry.options.skip) {
      return { ...entry, status: 'skip', detail: entry.options.skip, ms: 0, notes: [] };
    }
    const t = new TestContext(entry.name);
    let status = 'pass';
    let detail = '';
    try {
      await withTimeout(
        Promise.resolve().then(() => entry.fn(t)),
        entry.options.timeout || this.defaultTimeout,
        'test',
      );
    } catch (err) {
      if (err instanceof SkipError) {
        status = 'skip';
        detail = err.message;
      } else {
        status = 'fail';
        detail = describeError(err);
      }
    }
    const cleanupErrors = await withTimeout(t._cleanup(), 5000, 'cleanup').catch((err) => [err]);
    if (cleanupErrors.length > 0 && status !== 'fail') {
      status = 'fail';
      detail = `cleanup failed: ${cleanupErrors.map(describeError).join('; ')}`;
    }
    return { ...entry, status, detail, ms: Date.now() - started, notes: t.notes };
  }

  // Runs the selected tests, prints a report and returns the number of failures.
  async run(out = process.stdout) {
    const selected = this.tests.filter((t) => !this.filter || t.name.includes(this.filter));
    const results = new Array(selected.length);
    let next = 0;
    const worker = async () => {
      while (next < selected.length) {
        const index = next++;
        results[index] = await this._runOne(selected[index]);
        const r = results[index];
        out.write(`[${r.status}] ${r.name} (${r.ms} ms)\n`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.jobs, selected.length) }, worker));

    out.write('\n---- results (declaration order) ----\n');
    const counts = { pass: 0, fail: 0, skip: 0 };
    for (const r of results) {
      counts[r.status] += 1;
      const label = { pass: 'ok  ', fail: 'FAIL', skip: 'skip' }[r.status];
      out.write(`${label} ${r.name} (${r.ms} ms)\n`);
      for (const note of r.notes) {
        out.write(`       note: ${note}\n`);
      }
      if (r.detail) {
        for (const line of r.detail.split('\n')) {
          out.write(`       ${line}\n`);
        }
      }
    }
    out.write(`---- ${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped ----\n`);
    return counts.fail;
  }
}

module.exports = { Suite, SkipError };
