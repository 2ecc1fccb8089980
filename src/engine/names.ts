/** The tfjs backend name of the oneDNN engine. */
export const NATIVE_BACKEND_NAME = 'native';
