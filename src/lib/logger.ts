import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'tally' },
    redact: { paths: ['req.headers.authorization', '*.apiKey', '*.key', '*.secret', '*.secretKey', '*.webhookSecret', 'req.headers["stripe-signature"]'], censor: '[redacted]' },
  });
}
