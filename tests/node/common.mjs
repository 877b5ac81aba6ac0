// What every script here shares: where the server is, and how a result leaves the process.

/** The server's base URL (argv[2], else TRENDMAP_URL), without a trailing slash. */
export function serverUrl() {
  const base = process.argv[2] || process.env.TRENDMAP_URL;
  if (!base) {
    fail("usage: node <script>.mjs http://127.0.0.1:<port> (or set TRENDMAP_URL)");
  }
  return base.replace(/\/+$/, "");
}

/** The write key (argv[3], else TRENDMAP_API_KEY); some scripts need none. */
export function apiKey() {
  return process.argv[3] || process.env.TRENDMAP_API_KEY || "";
}

/** The WebSocket URL of the GraphQL endpoint. */
export function socketUrl(base) {
  return base.replace(/^http/, "ws") + "/graphql";
}

/** Print the results as one JSON document; exit 1 when any check failed. */
export function report(results) {
  const failed = results.checks.filter((check) => !check.ok);
  process.stdout.write(JSON.stringify({ ...results, failed: failed.length }, null, 2) + "\n");
  process.exit(failed.length ? 1 : 0);
}

export function fail(message) {
  process.stderr.write(message + "\n");
  process.exit(2);
}

/** A promise that rejects after `ms` with `what` named: nothing here waits forever. */
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Run named checks in order; a check is ok when it returns without throwing. */
export async function runChecks(checks) {
  const results = [];
  for (const [name, fn] of checks) {
    try {
      const detail = await fn();
      results.push({ name, ok: true, ...(detail === undefined ? {} : { detail }) });
    } catch (error) {
      results.push({ name, ok: false, error: String(error?.stack || error) });
    }
  }
  return results;
}

export function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) {
    throw new Error(`${what}: expected ${e}, got ${a}`);
  }
}

export function assert(condition, what) {
  if (!condition) {
    throw new Error(what);
  }
}

/** An ISO 8601 instant `hours` before now. */
export function hourAgo(hours) {
  return new Date(Date.now() - hours * 3_600_000).toISOString();
}

/** The subscriptions the server holds (its readiness check counts them). */
export async function subscribed(base) {
  const response = await fetch(`${base}/health/ready`);
  const body = await response.json();
  return body.checks.subscriptions.active;
}

/** Wait until the server holds `count` subscriptions: a flow published before a subscription
 * is registered is not that subscriber's to receive. */
export async function waitForSubscriptions(base, count, ms) {
  const deadline = Date.now() + ms;
  while ((await subscribed(base)) < count) {
    if (Date.now() > deadline) {
      throw new Error(`the server never held ${count} subscriptions`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
