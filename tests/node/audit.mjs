// graphql-http's server audit (GraphQL over HTTP) against a running trendmap server.
// A MUST failure (`error`) or a SHOULD failure (`warn`) fails the run; MAY notices are listed.
//   node audit.mjs http://127.0.0.1:8000
import { auditServer } from "graphql-http";

import { report, serverUrl } from "./common.mjs";

const results = await auditServer({ url: `${serverUrl()}/graphql` });

const summarise = async (result) => {
  if (result.status === "ok") {
    return { id: result.id, name: result.name, status: "ok" };
  }
  let body = "";
  try {
    body = (await result.response.text()).slice(0, 500);
  } catch {
    body = "(body already read)";
  }
  return {
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.reason,
    response: { status: result.response.status, body },
  };
};

const audits = await Promise.all(results.map(summarise));
const count = (status) => audits.filter((audit) => audit.status === status).length;
const checks = audits.map((audit) => ({
  ...audit,
  // MAY audits report `notice`: allowed; MUST (`error`) and SHOULD (`warn`) are not.
  ok: audit.status === "ok" || audit.status === "notice",
}));
report({
  audits: audits.length,
  ok: count("ok"),
  errors: count("error"),
  warnings: count("warn"),
  notices: count("notice"),
  checks: checks.filter((check) => check.status !== "ok"),
});
