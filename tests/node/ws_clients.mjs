// The two WebSocket protocols through their own npm clients: graphql-ws (graphql-transport-ws)
// and subscriptions-transport-ws (the legacy `graphql-ws` subprotocol). Over each: a query, the
// ingestTrends mutation (the write key in connection_init) firing a hotFlows subscription, a
// validation error's message and the close code of a bad credential; and the close code of a
// socket with no known subprotocol.
//   node ws_clients.mjs http://127.0.0.1:8000 <write key>
import { createClient } from "graphql-ws";
import { SubscriptionClient } from "subscriptions-transport-ws";
import WebSocket from "ws";

import {
  apiKey,
  assert,
  assertEqual,
  hourAgo,
  report,
  runChecks,
  serverUrl,
  socketUrl,
  subscribed,
  waitForSubscriptions,
  within,
} from "./common.mjs";

const base = serverUrl();
const url = socketUrl(base);
const key = apiKey();
const SECONDS = 10_000;

const QUERY = `query Pair($countries: [String!]) {
  hotspots(timeWindow: "24h", countries: $countries) { id country }
}`;
const INGEST = `mutation Ingest($trends: [TrendInput!]!) {
  ingestTrends(trends: $trends) { received inserted updated unchanged }
}`;
const HOT_FLOWS = `subscription Hot($countries: [String!]) {
  hotFlows(timeWindow: "24h", countries: $countries, threshold: 0.5) {
    id fromCountry toCountry heat
  }
}`;
const INVALID = `query { hotspots { id noSuchField } }`;
const EXPECTED_INVALID = "Cannot query field 'noSuchField' on type 'Hotspot'.";

/** `to` picks up exactly `from`'s topics an hour later: one hot flow from → to. */
function spread(from, to, tag) {
  return [
    [from, 3],
    [to, 2],
  ].flatMap(([country, hours]) =>
    ["alpha", "beta", "gamma"].map((topic) => ({
      timestamp: hourAgo(hours),
      country,
      topicLabel: `${tag} ${topic}`,
      count: 100,
      confidence: 0.9,
      sources: [],
    })),
  );
}

// -- graphql-transport-ws, through graphql-ws's client -------------------------------------

function modernClient(connectionParams, closed) {
  return createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams,
    retryAttempts: 0,
    lazy: true,
    on: { closed: (event) => closed?.(event) },
  });
}

const modern = {
  name: "graphql-transport-ws",
  pair: ["PT", "ES"],
  connect: () => modernClient({ Authorization: `Bearer ${key}` }),
  once(client, query, variables) {
    return new Promise((resolve, reject) => {
      let last;
      client.subscribe(
        { query, variables },
        { next: (value) => (last = value), error: reject, complete: () => resolve(last) },
      );
    });
  },
  listen(client, query, variables, onNext, onError) {
    return client.subscribe(
      { query, variables },
      { next: onNext, error: onError, complete: () => {} },
    );
  },
  close: (client) => client.dispose(),
  async badCredential() {
    let code;
    const client = modernClient({ Authorization: "Bearer not-a-key" }, (event) => {
      code = event.code;
    });
    const refusal = await this.once(client, QUERY, {}).then(
      () => null,
      (error) => error,
    );
    await client.dispose();
    return { code, reason: refusal?.reason };
  },
};

// -- legacy graphql-ws, through subscriptions-transport-ws ---------------------------------

function legacyClient(connectionParams, connectionCallback) {
  return new SubscriptionClient(
    url,
    { reconnect: false, lazy: false, connectionParams, connectionCallback },
    WebSocket,
  );
}

const legacy = {
  name: "graphql-ws (legacy)",
  pair: ["SE", "NO"],
  connect: () => legacyClient({ Authorization: `Bearer ${key}` }),
  once(client, query, variables) {
    return new Promise((resolve, reject) => {
      let last;
      client.request({ query, variables }).subscribe({
        next: (value) => (last = value),
        error: reject,
        complete: () => resolve(last),
      });
    });
  },
  listen(client, query, variables, onNext, onError) {
    const subscription = client
      .request({ query, variables })
      .subscribe({ next: onNext, error: onError });
    return () => subscription.unsubscribe();
  },
  close: (client) => client.close(),
  async badCredential() {
    let refusal;
    let client;
    const code = await new Promise((resolve) => {
      client = legacyClient({ Authorization: "Bearer not-a-key" }, (error) => {
        refusal = error;
      });
      // The client's own socket: its close event carries the server's code.
      client.client.addEventListener("close", (event) => resolve(event.code));
    });
    client.close();
    return { code, reason: refusal?.message };
  },
};

// -- the checks -----------------------------------------------------------------------------

function protocolChecks(protocol) {
  const [from, to] = protocol.pair;
  const tag = `node ${protocol.name}`;
  return [
    [
      `${protocol.name}: query`,
      async () => {
        const client = protocol.connect();
        try {
          const result = await within(SECONDS, "query", protocol.once(client, QUERY, {
            countries: ["FR", "BE"],
          }));
          assert(!result.errors, `errors: ${JSON.stringify(result.errors)}`);
          const countries = result.data.hotspots.map((hotspot) => hotspot.country).sort();
          assertEqual(countries, ["BE", "FR"], "hotspots");
          return result.data;
        } finally {
          await protocol.close(client);
        }
      },
    ],
    [
      `${protocol.name}: mutation fires hotFlows`,
      async () => {
        const client = protocol.connect();
        const received = [];
        let failure;
        const before = await subscribed(base);
        const stop = protocol.listen(
          client,
          HOT_FLOWS,
          { countries: protocol.pair },
          (value) => received.push(value),
          (error) => (failure = error),
        );
        try {
          await waitForSubscriptions(base, before + 1, SECONDS);
          const result = await within(SECONDS, "mutation", protocol.once(client, INGEST, {
            trends: spread(from, to, tag),
          }));
          assert(!result.errors, `errors: ${JSON.stringify(result.errors)}`);
          assertEqual(result.data.ingestTrends.inserted, 6, "inserted");
          await within(SECONDS, "a hotFlows event", (async () => {
            while (!received.length && failure === undefined) {
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          })());
          assert(failure === undefined, `the subscription failed: ${JSON.stringify(failure)}`);
          const flow = received[0].data.hotFlows;
          assertEqual([flow.fromCountry, flow.toCountry], [from, to], "the flow");
          assert(flow.heat >= 0.5, `heat ${flow.heat}`);
          assert(flow.id.endsWith(`:${from}-${to}`), `id ${flow.id}`);
          return { mutation: result.data.ingestTrends, event: flow };
        } finally {
          stop();
          await protocol.close(client);
        }
      },
    ],
    [
      `${protocol.name}: a validation error keeps its message`,
      async () => {
        const client = protocol.connect();
        try {
          const error = await within(SECONDS, "the error", protocol.once(client, INVALID, {})).then(
            (result) => (result?.errors ? result.errors : null),
            (failure) => failure,
          );
          const errors = Array.isArray(error) ? error : [error];
          assertEqual(errors.map((e) => e?.message), [EXPECTED_INVALID], "the error");
          return errors;
        } finally {
          await protocol.close(client);
        }
      },
    ],
    [
      `${protocol.name}: a bad credential closes with 4403`,
      async () => {
        const refused = await within(SECONDS, "the close", protocol.badCredential());
        assertEqual(refused.code, 4403, "close code");
        return refused;
      },
    ],
  ];
}

const noSubprotocol = [
  "no known subprotocol closes with 4406",
  () =>
    within(
      SECONDS,
      "the close",
      new Promise((resolve, reject) => {
        const socket = new WebSocket(url); // offers no subprotocol at all
        socket.on("error", reject);
        socket.on("close", (code, reason) => {
          try {
            assertEqual(code, 4406, "close code");
            resolve({ code, reason: reason.toString() });
          } catch (error) {
            reject(error);
          }
        });
      }),
    ),
];

const checks = await runChecks([...protocolChecks(modern), ...protocolChecks(legacy), noSubprotocol]);
report({ checks });
