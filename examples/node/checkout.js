#!/usr/bin/env node
// A checkout service calling offer-bandit from Node.js: the same pattern as
// examples/python/checkout.py, runnable.
//
//     cd examples/node && npm ci && node checkout.js --addr 127.0.0.1:50051
//
// 1. SelectOffer with a deadline (50 ms) and a request_id, on a channel with
//    the recommended retry policy (deploy/grpc-service-config.json); a retry
//    with the same request_id replays the same decision. The reply carries
//    the offer's name and display attributes.
// 2. A fallback offer when offer-bandit is down, slow or out of budget,
//    logged with RecordFallback so that it counts (queued while it is down).
// 3. RecordRedemption retried on UNAVAILABLE: safe, a redemption counts once.
//
// Prints one JSON object with what happened (tests/integration/examples.rs
// runs it against the real server). The proto is loaded at run time.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const FALLBACK_OFFER = 'double_points';
const FALL_BACK_ON = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED,
]);

function args() {
  const a = { addr: '127.0.0.1:50051', campaign: 'coffee', customer: 'c-2002', deadlineMs: 50 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === '--addr') a.addr = v;
    else if (k === '--campaign') a.campaign = v;
    else if (k === '--customer') a.customer = v;
    else if (k === '--deadline-ms') a.deadlineMs = Number(v);
    else {
      console.error(`usage: node checkout.js [--addr HOST:PORT] [--campaign ID] [--customer ID] [--deadline-ms N]`);
      process.exit(2);
    }
  }
  return a;
}

function loadService() {
  const def = protoLoader.loadSync('offerbandit/v1/offer_bandit.proto', {
    includeDirs: [path.join(__dirname, '..', '..', 'proto')],
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(def).offerbandit.v1;
}

function feature(v) {
  if (typeof v === 'boolean') return { flag: v };
  if (typeof v === 'number') return { number: v };
  return { category: String(v) };
}

function call(stub, method, request, timeoutMs) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    stub[method](request, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function selectOffer(stub, a, context, requestId) {
  const request = {
    campaign: a.campaign,
    customer_id: a.customer,
    request_id: requestId,
    context: Object.fromEntries(Object.entries(context).map(([k, v]) => [k, feature(v)])),
  };
  try {
    const r = await call(stub, 'SelectOffer', request, a.deadlineMs);
    return {
      offer_id: r.offer_id,
      offer_name: r.offer_name,
      display: r.display,
      decision_id: r.decision_id,
      propensity: r.propensity,
      arm: r.arm,
      replayed: r.replayed,
      ignored_features: r.ignored_features,
    };
  } catch (e) {
    if (FALL_BACK_ON.has(e.code)) {
      const name = Object.keys(grpc.status).find((k) => grpc.status[k] === e.code);
      return { offer_id: FALLBACK_OFFER, fallback: name };
    }
    throw e; // INVALID_ARGUMENT, NOT_FOUND...: a bug in the caller.
  }
}

// Logs a fallback impression; null when offer-bandit cannot take it now (a
// real caller keeps it in a queue and retries later).
async function recordFallback(stub, a, context, offerId, requestId) {
  const request = {
    campaign: a.campaign,
    offer_id: offerId,
    customer_id: a.customer,
    request_id: requestId,
    context: Object.fromEntries(Object.entries(context).map(([k, v]) => [k, feature(v)])),
  };
  try {
    const r = await call(stub, 'RecordFallback', request, 2000);
    return { decision_id: r.decision_id, replayed: r.replayed };
  } catch (e) {
    if (FALL_BACK_ON.has(e.code)) return null;
    throw e;
  }
}

async function recordRedemption(stub, decisionId, value, attempts = 5) {
  for (let attempt = 0; ; attempt++) {
    try {
      // The recommended deadline (docs/errors.md): a feedback pipeline can
      // wait, and a retry is safe.
      const r = await call(stub, 'RecordRedemption', { decision_id: decisionId, value }, 10000);
      return { already_recorded: r.already_recorded, offer_id: r.offer_id };
    } catch (e) {
      if (e.code !== grpc.status.UNAVAILABLE || attempt + 1 === attempts) throw e;
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
  }
}

async function main() {
  const a = args();
  const ob = loadService();
  // The recommended retry policy, with SelectOffer's timeout set to our
  // deadline (the config's timeout caps any deadline a call asks for).
  const serviceConfig = JSON.parse(
    fs.readFileSync(path.join(__dirname, '..', '..', 'deploy', 'grpc-service-config.json'), 'utf8'),
  );
  for (const m of serviceConfig.methodConfig) {
    if (m.name.some((n) => n.method === 'SelectOffer')) m.timeout = `${(a.deadlineMs / 1000).toFixed(3)}s`;
  }
  const stub = new ob.OfferService(a.addr, grpc.credentials.createInsecure(), {
    'grpc.service_config': JSON.stringify(serviceConfig),
  });
  const context = { lifecycle: 'lapsing', daypart: 'afternoon', days_since_last_visit: 41 };
  const requestId = crypto.randomUUID();
  const shown = await selectOffer(stub, a, context, requestId);
  const result = { shown };
  if (shown.fallback) {
    result.fallback_logged = await recordFallback(stub, a, context, shown.offer_id, requestId);
  } else {
    result.retry = await selectOffer(stub, a, context, requestId);
    result.redeemed = await recordRedemption(stub, shown.decision_id, 3.5);
    result.redeemed_again = await recordRedemption(stub, shown.decision_id, 3.5);
  }
  console.log(JSON.stringify(result));
  stub.close();
}

main().catch((e) => {
  console.error(`checkout example failed: ${e.message}`);
  process.exit(1);
});
