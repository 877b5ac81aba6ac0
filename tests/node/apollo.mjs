// Apollo Client (its normalised InMemoryCache) against a running trendmap server: queries over
// HTTP, and a hotFlows subscription through GraphQLWsLink (graphql-ws) fired by a mutation.
// The server must hold a hot flow FR → BE in the last 24 hours.
//   node apollo.mjs http://127.0.0.1:8000 <write key>
import { ApolloClient, HttpLink, InMemoryCache, gql, split } from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { isSubscriptionOperation } from "@apollo/client/utilities";
import { createClient } from "graphql-ws";
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
const key = apiKey();
const SECONDS = 10_000;
const AS_OF = new Date().toISOString();
const EARLIER = new Date(Date.parse(AS_OF) - 60_000).toISOString();

const FLOWS = gql`
  query Flows($window: String!, $asOf: DateTime) {
    flows(timeWindow: $window, asOf: $asOf, threshold: 0) { id fromCountry toCountry heat }
  }
`;
const FLOW_DETAILS = gql`
  query FlowDetails($window: String!, $asOf: DateTime) {
    flows(timeWindow: $window, asOf: $asOf, threshold: 0) { id sharedTopics similarityScore }
  }
`;
const HOTSPOTS = gql`
  query Hotspots($asOf: DateTime) {
    hotspots(timeWindow: "24h", asOf: $asOf) { id country score }
  }
`;
const INVALID = gql`
  query Invalid { hotspots { id noSuchField } }
`;
const INGEST = gql`
  mutation Ingest($trends: [TrendInput!]!) {
    ingestTrends(trends: $trends) { inserted }
  }
`;
const HOT_FLOWS = gql`
  subscription Hot($countries: [String!]) {
    hotFlows(timeWindow: "24h", countries: $countries, threshold: 0.5) {
      id fromCountry toCountry heat
    }
  }
`;

/** A client with a fresh cache, counting the HTTP requests its link makes. */
function apollo() {
  const counter = { requests: 0 };
  const http = new HttpLink({
    uri: `${base}/graphql`,
    headers: { Authorization: `Bearer ${key}` },
    fetch: (input, init) => {
      counter.requests += 1;
      return fetch(input, init);
    },
  });
  const socket = createClient({
    url: socketUrl(base),
    webSocketImpl: WebSocket,
    connectionParams: { Authorization: `Bearer ${key}` },
    retryAttempts: 0,
  });
  const link = split(({ query }) => isSubscriptionOperation(query), new GraphQLWsLink(socket), http);
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  return { client, counter, close: () => socket.dispose() };
}

/** The cache's entries of a type, by id. */
function entries(client, typename) {
  const all = client.cache.extract();
  return Object.fromEntries(
    Object.entries(all).filter(([ref]) => ref.startsWith(`${typename}:`)),
  );
}

const flowsQuery = (window, asOf = AS_OF) => ({ query: FLOWS, variables: { window, asOf } });

const checks = await runChecks([
  [
    "cache-first: A, B, A, B, A make 2 requests",
    async () => {
      const { client, counter, close } = apollo();
      try {
        const a = flowsQuery("24h");
        const b = { query: HOTSPOTS, variables: { asOf: AS_OF } };
        const answers = [];
        for (const request of [a, b, a, b, a]) {
          const { data } = await client.query({ ...request, fetchPolicy: "cache-first" });
          answers.push(data);
        }
        assertEqual(counter.requests, 2, "network requests");
        assertEqual(answers[2], answers[0], "A from the cache");
        assertEqual(answers[3], answers[1], "B from the cache");
        const ids = answers[0].flows.map((flow) => flow.id);
        assert(ids.some((id) => id.startsWith("24h@") && id.endsWith(":FR-BE")), `ids ${ids}`);
        assert(answers[1].hotspots.length >= 2, "hotspots");
        return { requests: counter.requests };
      } finally {
        close();
      }
    },
  ],
  [
    "one object per id: two queries of one flow fill one cache entry",
    async () => {
      const { client, close } = apollo();
      try {
        const { data: first } = await client.query(flowsQuery("24h"));
        const { data: second } = await client.query({
          query: FLOW_DETAILS,
          variables: { window: "24h", asOf: AS_OF },
        });
        const ids = first.flows.map((flow) => flow.id);
        assertEqual(second.flows.map((flow) => flow.id), ids, "the same flows");
        const cached = entries(client, "Flow");
        assertEqual(Object.keys(cached).sort(), ids.map((id) => `Flow:${id}`).sort(), "entries");
        for (const flow of first.flows) {
          const entry = cached[`Flow:${flow.id}`];
          assertEqual(entry.heat, flow.heat, "heat (from the first query)");
          assert("sharedTopics" in entry, "sharedTopics (from the second query) in one entry");
        }
        return { entries: Object.keys(cached) };
      } finally {
        close();
      }
    },
  ],
  [
    "two windows and two instants never merge",
    async () => {
      const { client, close } = apollo();
      try {
        const { data: day } = await client.query(flowsQuery("24h"));
        const { data: half } = await client.query(flowsQuery("12h"));
        const { data: earlier } = await client.query(flowsQuery("24h", EARLIER));
        const dayIds = day.flows.map((flow) => flow.id);
        const otherIds = [...half.flows, ...earlier.flows].map((flow) => flow.id);
        assert(half.flows.length && earlier.flows.length, "flows in every answer");
        assert(
          otherIds.every((id) => !dayIds.includes(id)),
          `ids shared between answers: ${JSON.stringify({ dayIds, otherIds })}`,
        );
        const cached = entries(client, "Flow");
        assertEqual(
          Object.keys(cached).length,
          new Set([...dayIds, ...otherIds]).size,
          "one cache entry per answer's flow",
        );
        const again = client.readQuery(flowsQuery("24h"));
        assertEqual(again, day, "the 24h answer, untouched by the others");
        return { entries: Object.keys(cached) };
      } finally {
        close();
      }
    },
  ],
  [
    "a validation error keeps its message",
    async () => {
      const { client, close } = apollo();
      try {
        const failure = await client.query({ query: INVALID }).then(
          (result) => result.error ?? null,
          (error) => error,
        );
        assert(failure, "no error");
        const messages = (failure.errors ?? []).map((error) => error.message);
        assertEqual(messages, ["Cannot query field 'noSuchField' on type 'Hotspot'."], "errors");
        return { type: failure.constructor.name, messages };
      } finally {
        close();
      }
    },
  ],
  [
    "a subscription through GraphQLWsLink, fired by a mutation",
    async () => {
      const { client, close } = apollo();
      const received = [];
      let failure;
      const before = await subscribed(base);
      const subscription = client
        .subscribe({ query: HOT_FLOWS, variables: { countries: ["NL", "LU"] } })
        .subscribe({ next: (value) => received.push(value), error: (error) => (failure = error) });
      try {
        await waitForSubscriptions(base, before + 1, SECONDS);
        const trends = [
          ["NL", 3],
          ["LU", 2],
        ].flatMap(([country, hours]) =>
          ["alpha", "beta", "gamma"].map((topic) => ({
            timestamp: hourAgo(hours),
            country,
            topicLabel: `node apollo ${topic}`,
            count: 100,
            confidence: 0.9,
          })),
        );
        const { data } = await client.mutate({ mutation: INGEST, variables: { trends } });
        assertEqual(data.ingestTrends.inserted, 6, "inserted");
        await within(SECONDS, "a hotFlows event", (async () => {
          while (!received.length && failure === undefined) {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })());
        assert(failure === undefined, `the subscription failed: ${failure}`);
        const flow = received[0].data.hotFlows;
        assertEqual([flow.fromCountry, flow.toCountry], ["NL", "LU"], "the flow");
        assert(`Flow:${flow.id}` in client.cache.extract(), "the event's flow in the cache");
        return { event: flow };
      } finally {
        subscription.unsubscribe();
        close();
      }
    },
  ],
]);
report({ checks });
