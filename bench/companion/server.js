// Uppy Companion serving its S3 routes (/s3/params, /s3/multipart) for the
// same bucket as the upload route, as a minimal express app. No remote
// providers, no sessions beyond what Companion itself sets up.
//   PORT=9300 S3_ENDPOINT=... S3_BUCKET=... S3_KEY=... S3_SECRET=... node server.js
import express from 'express'
import os from 'node:os'
import * as companion from '@uppy/companion'

const port = Number(process.env.PORT || 9300)
const { app: companionApp } = companion.app({
  providerOptions: {},
  s3: {
    key: process.env.S3_KEY,
    secret: process.env.S3_SECRET,
    bucket: process.env.S3_BUCKET,
    endpoint: process.env.S3_ENDPOINT,
    region: 'us-east-1',
    forcePathStyle: true,
    expires: 60,
    getKey: ({ filename }) => `companion/${Date.now()}-${filename}`,
  },
  server: { host: `127.0.0.1:${port}`, protocol: 'http' },
  filePath: os.tmpdir(),
  secret: process.env.COMPANION_SECRET || 'bench-secret',
  corsOrigins: false,
  // Companion refuses to start in production without it; remote provider
  // uploads (what it is for) are not used here.
  uploadUrls: [process.env.S3_ENDPOINT],
  logClientVersion: false,
})

const app = express()
app.use(companionApp)
app.listen(port, '127.0.0.1', () => console.log(`companion on 127.0.0.1:${port}`))
