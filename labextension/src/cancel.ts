/**
 * Cancel in the SLURM resource dialog cancels quietly.
 *
 * The dialog runs inside the page's kernel-start request (index.ts): Cancel answers that
 * request with a 400 whose status text is CANCELLED_STATUS, and nothing reaches the server, so
 * no job is submitted. JupyterLab's SessionContext takes any failed start for an error and
 * shows its "Error Starting Kernel" box (from `_handleSessionError`, before it rethrows). Here
 * a cancelled start is told apart: the session is cleared as for any failed start, and no box
 * is shown. The notebook stays open with no kernel; JupyterLab itself then offers its kernel
 * picker once, as after any start that did not happen when a notebook opens.
 */

/** The status text of the answer a cancelled kernel start gets. */
export const CANCELLED_STATUS = 'Kernel start cancelled';

/** Whether `error` (what SessionContext's start rejected with) is a start cancelled in the dialog. */
export function isCancelledStart(error: unknown): boolean {
  const response = (error as { response?: { status?: number; statusText?: string } } | null)?.response;
  return !!response && response.status === 400 && response.statusText === CANCELLED_STATUS;
}

/**
 * Make `prototype._handleSessionError` (SessionContext's) quiet for a cancelled start; other
 * errors go to the original. Returns a function that undoes the patch.
 */
export function quietCancel(prototype: any): () => void {
  const original = prototype._handleSessionError;
  prototype._handleSessionError = async function (this: any, error: unknown): Promise<void> {
    if (!isCancelledStart(error)) {
      return original.call(this, error);
    }
    this._handleNewSession(null);
  };
  return () => {
    prototype._handleSessionError = original;
  };
}
