const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A UUID in its canonical text form (any version, either case), as PostgreSQL's uuid type prints it. */
export function isUuid(text: string): boolean {
  return UUID.test(text);
}
