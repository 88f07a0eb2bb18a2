/**
 * The request parameters and answers of each method, built from the generated OpenAPI types
 * (`openapi.ts`) so that they change when the API document does.
 */
export {};
