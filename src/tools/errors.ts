/**
 * A tool failure whose message is the whole story for the operator (what was wrong, what state
 * things were left in, what to do): the command line prints it without a stack.
 */
export class ToolError extends Error {
  override name = 'ToolError';
}
