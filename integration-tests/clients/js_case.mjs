// One AWS SDK for JavaScript v3 case against vpcgate, for the client matrix (integration-tests/clients.rs).
// Usage: node js_case.mjs CASE BUCKET
// The JS SDK does not read HTTPS_PROXY: the proxy is given through an agent, and vpcgate's CA through
// NODE_EXTRA_CA_CERTS (set by the runner). Prints one JSON object like boto3_case.py.
import { S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { HttpsProxyAgent } from "https-proxy-agent";

const [, , kase, bucket] = process.argv;
const agent = new HttpsProxyAgent(process.env.HTTPS_PROXY);

function client(extra = {}) {
  return new S3Client({
    region: process.env.AWS_DEFAULT_REGION || "us-east-1",
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpsAgent: agent, connectionTimeout: 10000, requestTimeout: 30000 }),
    ...extra,
  });
}

async function run() {
  if (kase === "crud") {
    const s3 = client();
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "js.txt", Body: "hello from js" }));
    const got = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "js.txt" }))).Body.transformToString();
    if (got !== "hello from js") throw new Error(`read back ${got}`);
    const list = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    if (!(list.Contents || []).some((o) => o.Key === "js.txt")) throw new Error("js.txt not listed");
    return "put/get/list ok";
  }
  if (kase === "dualstack") {
    await client({ useDualstackEndpoint: true }).send(new ListObjectsV2Command({ Bucket: bucket }));
    return "listed over dualstack";
  }
  if (kase === "other-region") {
    await client({ region: "eu-west-1" }).send(new ListObjectsV2Command({ Bucket: bucket }));
    return "listed in eu-west-1";
  }
  if (kase === "outside-answer") {
    await client().send(new ListObjectsV2Command({ Bucket: bucket }));
    return "listed a bucket whose name resolves outside every route";
  }
  if (kase === "legacy-global") {
    // The v3 SDK never picks the legacy global name itself; an endpoint setting does.
    await client({ endpoint: "https://s3.amazonaws.com" }).send(new ListObjectsV2Command({ Bucket: bucket }));
    return "listed through the legacy global name";
  }
  throw new Error(`unknown case ${kase}`);
}

try {
  const detail = await run();
  console.log(JSON.stringify({ ok: true, detail, error: null, code: null }));
} catch (e) {
  // A refused CONNECT reaches the SDK as the proxy's own response (https-proxy-agent hands it over),
  // which the SDK then fails to parse as XML: show what a developer finds on the error object.
  const r = e.$response || {};
  const reason = r.headers ? r.headers["x-vpcgate-reason"] : undefined;
  const extra = r.statusCode ? ` [HTTP ${r.statusCode}${reason ? ` x-vpcgate-reason=${reason}` : ""}] ${e.$responseBodyText || ""}` : "";
  console.log(JSON.stringify({ ok: false, detail: "", code: e.name || e.code || "Error", error: `${e.name}: ${e.message}${extra}` }));
}
process.exit(0);
