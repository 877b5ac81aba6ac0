// GraphiQL on this server's own /graphql: queries and mutations over HTTP, subscriptions over
// graphql-transport-ws on the same URL. Everything it loads comes from this origin.
//
// A read key, if the server needs one: /graphql#key=... (a fragment never leaves the browser,
// so the key is in no server log). It goes in the Authorization header of every request and in
// the WebSocket's connection_init, as the live map sends it. A query to start from:
// /graphql?q=<query> (not "query", which would run it instead of opening GraphiQL).
(() => {
  "use strict";
  const root = document.getElementById("graphiql");
  const endpoint = new URL(root.dataset.endpoint, location.href);
  const socket = new URL(endpoint);
  socket.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  const credentials = key ? { Authorization: "Bearer " + key } : {};

  const fetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    subscriptionUrl: socket.href,
    headers: credentials,
    wsConnectionParams: credentials,
  });

  const search = new URLSearchParams(location.search);
  const remember = (name, value) => {
    if (value) search.set(name, value);
    else search.delete(name);
    const query = search.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
  };

  const DEFAULT_QUERY = `# Ctrl-Enter runs the query. The Docs pane (top left)
# describes every type, field and argument.
query Map {
  hotspots(timeWindow: "24h", limit: 5) {
    country intensity volume velocity
    topTopics { label count }
  }
  flows(timeWindow: "24h", threshold: 0.5, limit: 5) {
    fromCountry toCountry heat sharedTopics timeDeltaHours simultaneous
  }
}
`;

  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  function App() {
    const [query, setQuery] = React.useState(search.get("q") || DEFAULT_QUERY);
    const [variables, setVariables] = React.useState(search.get("variables") || undefined);
    return React.createElement(GraphiQL, {
      fetcher,
      query,
      variables,
      plugins: [explorer],
      defaultEditorToolsVisibility: true,
      shouldPersistHeaders: false,
      onEditQuery: (value) => {
        setQuery(value);
        remember("q", value === DEFAULT_QUERY ? null : value);
      },
      onEditVariables: (value) => {
        setVariables(value);
        remember("variables", value);
      },
    });
  }

  ReactDOM.createRoot(root).render(React.createElement(App));
})();
