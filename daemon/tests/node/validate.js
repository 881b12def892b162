// Validates SNS messages (JSON files named on the command line) with AWS's sns-validator, as an
// HTTP subscriber would: it fetches SigningCertURL over HTTPS (the harness points
// NODE_EXTRA_CA_CERTS at the test CA) and checks the signature. SNS_CERT_HOST is the
// certificate host pattern (by default sns-validator trusts only sns.*.amazonaws.com).
const fs = require("fs");
const MessageValidator = require("sns-validator");

const validator = new MessageValidator(new RegExp(process.env.SNS_CERT_HOST));
let pending = process.argv.length - 2;
let failed = false;
for (const file of process.argv.slice(2)) {
  validator.validate(fs.readFileSync(file, "utf8"), (error, message) => {
    if (error) {
      console.error(`${file}: INVALID: ${error.message}`);
      failed = true;
    } else {
      console.log(`${file}: valid ${message.Type} (SignatureVersion ${message.SignatureVersion})`);
    }
    if (--pending === 0) process.exit(failed ? 1 : 0);
  });
}
