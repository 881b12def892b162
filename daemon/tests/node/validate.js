// Validates SNS messages (JSON files named on the command line) as an HTTP subscriber would,
// with AWS's sns-validator: it fetches SigningCertURL over HTTPS (the harness points
// NODE_EXTRA_CA_CERTS at the test CA) and checks the signature. SNS_CERT_HOST is the
// certificate host pattern (by default sns-validator trusts only sns.*.amazonaws.com).
//
// sns-validator 0.3.5 checks an UnsubscribeConfirmation with a Notification's keys (without
// Token), while AWS's documentation has SNS sign Token for both confirmation types; such a
// message is verified here as the documentation says, with node's crypto and the same
// certificate.
const fs = require("fs");
const https = require("https");
const crypto = require("crypto");
const MessageValidator = require("sns-validator");

const hostPattern = new RegExp(process.env.SNS_CERT_HOST);
const validator = new MessageValidator(hostPattern);

function documented(message, cb) {
  const certUrl = new URL(message.SigningCertURL);
  if (certUrl.protocol !== "https:" || !hostPattern.test(certUrl.host)) return cb(new Error("untrusted SigningCertURL"));
  https.get(certUrl, (response) => {
    let pem = "";
    response.on("data", (chunk) => (pem += chunk));
    response.on("end", () => {
      const keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"];
      const text = keys.filter((key) => key in message).map((key) => `${key}\n${message[key]}\n`).join("");
      const verifier = crypto.createVerify(message.SignatureVersion === "2" ? "RSA-SHA256" : "RSA-SHA1");
      verifier.update(text, "utf8");
      cb(verifier.verify(pem, message.Signature, "base64") ? null : new Error("The message signature is invalid."), message);
    });
  }).on("error", cb);
}

let pending = process.argv.length - 2;
let failed = false;
for (const file of process.argv.slice(2)) {
  const text = fs.readFileSync(file, "utf8");
  const message = JSON.parse(text);
  const check = message.Type === "UnsubscribeConfirmation" ? (cb) => documented(message, cb) : (cb) => validator.validate(text, cb);
  check((error, checked) => {
    if (error) {
      console.error(`${file}: INVALID: ${error.message}`);
      failed = true;
    } else {
      console.log(`${file}: valid ${checked.Type} (SignatureVersion ${checked.SignatureVersion})`);
    }
    if (--pending === 0) process.exit(failed ? 1 : 0);
  });
}
